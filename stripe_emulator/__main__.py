"""`python -m stripe_emulator`: run the emulator as a process (see `stripe_emulator.cli`)."""

from stripe_emulator.cli import main

if __name__ == "__main__":
    main()
