from bgit.cli.main import main

main()
