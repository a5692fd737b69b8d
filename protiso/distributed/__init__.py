"""Scale-out on Ray (optional extra `protiso[ray]`): embedding and alignment on a Ray cluster,
results in the same store.

The driver (the process running `protiso ... --engine ray`) selects the work with the same rule
as the local engine, hands it to Ray Data as Arrow batches, and stateful actors (one model load
each) run the same compute code, write Parquet parts atomically into the dataset's directory
and return the part list (and statistics). Only the driver writes the catalog, registering each
part once in a transaction; files a killed job wrote but never registered are removed at the
next start. The store directory must be on a filesystem every node sees at the same path."""
