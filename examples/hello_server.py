"""The program of the original link-server report, in linkserver.

It listens on a port, waits for one client link, writes
Print["Hello client program."] to it, closes it and shuts down -- the
program that, with WSTP's C API, left its client hanging.

    python examples/hello_server.py [PORT]      # default 8000; 0 picks a free port

Then, from another terminal: python examples/hello_client.py 8000@127.0.0.1
"""

from __future__ import annotations

import sys

import linkserver


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with linkserver.LinkServer(port=port) as server:  # WSNewLinkServerWithPort
        print(f"hello_server: waiting for a client on {server.name}", flush=True)
        link = server.accept()  # WSWaitForNewLinkFromLinkServer
        link.put_function("Print", 1)  # WSPutFunction(link, "Print", 1)
        link.put_string("Hello client program.")  # WSPutString(link, "...")
        link.flush()  # WSFlush
        link.close()  # WSClose
    print("hello_server: done", flush=True)  # WSShutdownLinkServer on leaving the block


if __name__ == "__main__":
    main()
