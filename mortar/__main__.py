from mortar.cli.main import main

main()
