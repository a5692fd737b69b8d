from protiso.cli import main

main()
