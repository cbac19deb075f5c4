from safespace.cli import main

main()
