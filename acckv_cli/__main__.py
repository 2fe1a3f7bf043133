from acckv_cli.cli import main

main()
