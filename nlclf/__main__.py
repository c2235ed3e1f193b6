"""`nlclf ...` and `python -m nlclf ...`: the command line (nlclf.cli).

``nlclf predict MODEL ...`` starts hashing the model's arrays on another core (digest.prefetch)
before typer and click are imported and the command line parsed: loading waits for that
checksum, and on a 2-core machine it ends after everything else a one-line prediction does.
The command itself asks for the same hashing (it is where MODEL after an option is found);
digest.prefetch starts it once a file."""

import sys


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "predict" and not args[1].startswith("-"):
        from .digest import prefetch
        prefetch(args[1])
    from .cli import main as run
    run()


if __name__ == "__main__":
    main()
