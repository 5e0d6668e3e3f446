"""Connect to a link server, print the first expression it sends, and close.

    python examples/hello_client.py 8000@127.0.0.1
"""

from __future__ import annotations

import sys

import linkserver


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "8000@127.0.0.1"
    with linkserver.connect(name, timeout=10) as link:  # LinkConnect[name]
        print(link.get(timeout=10))  # LinkRead[link]


if __name__ == "__main__":
    main()
