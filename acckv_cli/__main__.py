from acckv_cli.cli.app import main

main()
