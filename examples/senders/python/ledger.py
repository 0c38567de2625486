#!/usr/bin/env python3
"""A correct ledger sender written apart from onecopy, in Python's stdlib:
the kind of sender teams write. It sends the list in batches of --batch
recipients per SMTP transaction over --connections parallel connections,
records each batch in SQLite after its 250, gives each batch a Message-ID
fixed by its place in the list (so a re-sent batch is the same message),
retries 4xx and lost connections, bounces 5xx recipients, takes a lock
against a second instance, and on SIGTERM finishes the batches in hand.

--bug makes it wrong on purpose, so a spec can prove the harness catches it:
  resend-recorded  on every restart, re-send one batch it already recorded
  record-before    record each batch before sending it (at-most-once)
"""
import argparse
import fcntl
import os
import queue
import signal
import smtplib
import socket
import sqlite3
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--connections", type=int, default=1)
ap.add_argument("--bug", choices=["resend-recorded", "record-before"])
args = ap.parse_args()

env = os.environ
host, port = env["ONECOPY_SMTP_ADDR"].rsplit(":", 1)
state = env["ONECOPY_STATE_DIR"]
campaign = env["ONECOPY_CAMPAIGN"]
attempt = int(env.get("ONECOPY_ATTEMPT", "1"))

stopping = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopping.set())

lock = open(os.path.join(state, "ledger.lock"), "w")
fcntl.flock(lock, fcntl.LOCK_EX)  # a second instance waits its turn

db = sqlite3.connect(os.path.join(state, "ledger.db"), check_same_thread=False, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS rcpt (addr TEXT PRIMARY KEY, rcpt TEXT, pos INTEGER, state TEXT)")
dblock = threading.Lock()

with open(env["ONECOPY_RECIPIENTS"]) as f:
    listed = [l.strip() for l in f if l.strip()]
with dblock:
    db.execute("BEGIN")
    for i, r in enumerate(listed):
        db.execute("INSERT OR IGNORE INTO rcpt VALUES (?, ?, ?, 'pending')", (r.lower(), r, i))
    db.execute("COMMIT")


def batches(where):
    rows = db.execute("SELECT addr, rcpt, pos FROM rcpt WHERE " + where + " ORDER BY pos").fetchall()
    out = {}
    for addr, rcpt, pos in rows:
        out.setdefault(pos // args.batch, []).append((addr, rcpt))
    return sorted(out.items())


def message(k, rcpts):
    return ("From: <campaign@python-ledger.example>\r\nTo: <undisclosed-recipients:;>\r\n"
            "Subject: campaign %s\r\nMessage-ID: <%s-%d@python-ledger.example>\r\n\r\nHello.\r\n" % (campaign, campaign, k))


def mark(rows, st):
    with dblock:
        db.execute("BEGIN")
        for addr, _ in rows:
            db.execute("UPDATE rcpt SET state = ? WHERE addr = ?", (st, addr))
        db.execute("COMMIT")


def send(conn, k, rows):
    """Sends batch k; returns the rows still pending (4xx), or None when done."""
    refused = {}
    try:
        refused = conn.sendmail("campaign@python-ledger.example", [r for _, r in rows], message(k, rows))
    except smtplib.SMTPRecipientsRefused as e:
        refused = e.recipients
        if all(code < 500 for code, _ in refused.values()):
            return rows
        mark([(a, r) for a, r in rows if r in refused and refused[r][0] >= 500], "bounced")
        return [(a, r) for a, r in rows if r in refused and refused[r][0] < 500] or None
    bounced = [(a, r) for a, r in rows if r in refused and refused[r][0] >= 500]
    if bounced:
        mark(bounced, "bounced")
    rest = [(a, r) for a, r in rows if r in refused and refused[r][0] < 500]
    if args.bug != "record-before":
        mark([(a, r) for a, r in rows if r not in refused], "sent")
    return rest or None


work = queue.Queue()
todo = batches("state = 'pending'")
if args.bug == "resend-recorded" and attempt > 1:
    done = batches("state = 'sent'")
    if done:
        todo.insert(0, done[0])
for item in todo:
    work.put(item)
failed = []


def worker():
    conn = None
    while not stopping.is_set():
        try:
            k, rows = work.get_nowait()
        except queue.Empty:
            break
        if args.bug == "record-before":
            mark(rows, "sent")
        tries = 0
        while rows and not stopping.is_set():
            try:
                if conn is None:
                    conn = smtplib.SMTP(host, int(port), timeout=10)
                rows = send(conn, k, rows)
                if rows:
                    tries += 1
                    time.sleep(min(0.02 * 2 ** (tries - 1), 1))  # 20ms, 40ms, ... 1s
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, socket.error, OSError):
                # In doubt, or refused: the same batch again, same Message-ID.
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                conn = None
                tries += 1
                time.sleep(min(0.02 * 2 ** (tries - 1), 1))  # 20ms, 40ms, ... 1s
        if rows:
            failed.append(k)
    if conn is not None:
        try:
            conn.quit()
        except Exception:
            pass


threads = [threading.Thread(target=worker) for _ in range(args.connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
left = db.execute("SELECT count(*) FROM rcpt WHERE state = 'pending'").fetchone()[0]
if left:
    print("ledger.py: %d recipients pending, rerun to continue" % left, file=sys.stderr)
    sys.exit(1)
