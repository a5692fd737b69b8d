-- Isotropy beyond the paper (issue 17): IsoScore*'s shrinkage target named precisely, intrinsic
-- dimension, rogue dimensions, bias-corrected bootstrap intervals and the bootstrap bias.

-- Rows written before this migration without a reference population shrank toward tr(C)/d * I
-- but were labelled 'identity'; 'identity' now means I itself (the reference package's
-- suggestion), so those rows are relabelled with the target they used.
UPDATE metrics SET star_target = 'scaled-identity' WHERE star_target = 'identity';

-- Intrinsic dimension (`protiso isotropy --intrinsic`): TwoNN (Facco et al. 2017, least squares
-- after discarding the largest 10% of ratios) and the Levina-Bickel MLE (MacKay-Ghahramani
-- average) with intrinsic_k neighbours; duplicate vectors removed first and counted.
ALTER TABLE metrics ADD COLUMN intrinsic_dim_twonn DOUBLE;
ALTER TABLE metrics ADD COLUMN intrinsic_dim_mle DOUBLE;
ALTER TABLE metrics ADD COLUMN intrinsic_k INTEGER;
ALTER TABLE metrics ADD COLUMN intrinsic_n_duplicates BIGINT;

-- Rogue dimensions (Timkey & van Schijndel 2021): the dimensions contributing most to the mean
-- cosine over all ordered pairs (self-pairs included, exact from the statistics), largest first,
-- each one's share, and the share of those dimensions together.
ALTER TABLE metrics ADD COLUMN rogue_dims INTEGER[];
ALTER TABLE metrics ADD COLUMN rogue_shares DOUBLE[];
ALTER TABLE metrics ADD COLUMN rogue_top_share DOUBLE;

-- Bootstrap: how the intervals were made ('percentile', 'bc', 'bca'), the jackknife blocks the
-- BCa acceleration came from, and the bootstrap bias mean(replicates) - estimate per metric.
ALTER TABLE metrics ADD COLUMN ci_method VARCHAR;
ALTER TABLE metrics ADD COLUMN jackknife_blocks INTEGER;
ALTER TABLE metrics ADD COLUMN isoscore_bias DOUBLE;
ALTER TABLE metrics ADD COLUMN effective_dims_bias DOUBLE;
ALTER TABLE metrics ADD COLUMN avg_cosine_bias DOUBLE;
ALTER TABLE metrics ADD COLUMN isoscore_star_bias DOUBLE;
