"""``python cli.py fit --config configs/moe/tiny.yaml`` (same as the ``lit`` console script): see lit_core/cli.py."""

from lit_core.cli import main

if __name__ == "__main__":
    main()
