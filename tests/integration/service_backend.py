"""A service backend for the integration tests and the demo, run in a pod's
network namespace: it answers with its own name, so that a client can tell
which backend a VIP sent it to.

  HTTP on --http (GET / -> "NAME\\n"), IPv4 and IPv6;
  a line echo on --echo (each line back as "NAME LINE"): long-lived connections;
  UDP on --udp (each datagram answered with "NAME DATAGRAM").

    service_backend.py NAME [--http 8080] [--echo 9000] [--udp 5353]
"""
import argparse
import http.server
import socket
import socketserver
import threading


class DualStackTCPServer(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog (5 by default: SYNs dropped under a burst of connects)

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--http", type=int, default=8080)
    ap.add_argument("--echo", type=int, default=9000)
    ap.add_argument("--udp", type=int, default=5353)
    args = ap.parse_args()
    name = args.name.encode()

    class Http(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = name + b"\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(name + b" " + line)
                self.wfile.flush()

    servers = [DualStackTCPServer(("::", args.http), Http), DualStackTCPServer(("::", args.echo), Echo)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    udp.bind(("::", args.udp))
    print("ready", flush=True)
    while True:
        data, peer = udp.recvfrom(65535)
        udp.sendto(name + b" " + data, peer)


if __name__ == "__main__":
    main()
