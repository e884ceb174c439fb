"""``python -m lit_moe.hf CHECKPOINT FOLDER [--family F] [--tokenizer T]``: export a Lightning checkpoint."""

from lit_moe.hf.checkpoint import main

main()
