"""python -m scripts.image {base,build,check,rehearse,clean} --help"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "base": "scripts.image.base",
        "build": "scripts.image.build",
        "check": "scripts.image.build",
        "rehearse": "scripts.image.rehearse",
        "clean": "scripts.image.clean",
    }
    if not argv or argv[0] not in commands:
        print(__doc__.strip() + "\n\n" + (sys.modules["scripts.image"].__doc__ or ""), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib
    module = importlib.import_module(commands[argv[0]])
    if argv[0] == "check":
        return module.check_main(argv[1:])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
