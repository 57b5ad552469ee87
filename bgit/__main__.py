from bgit.cli.main import main

if __name__ == "__main__":  # spawn-safe: vLLM's worker processes re-import the main module
    main()
