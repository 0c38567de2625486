#!/usr/bin/env python3
"""The buggy job, in Python's stdlib: one loop over the list, a fresh
Message-ID every time, no memory between attempts. Any error ends the
attempt, and the job runner (onecopy) starts it again from the top: the
head of the list gets a copy per attempt."""
import os
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

host, port = os.environ["ONECOPY_SMTP_ADDR"].rsplit(":", 1)
with open(os.environ["ONECOPY_RECIPIENTS"]) as f:
    recipients = [line.strip() for line in f if line.strip()]

with smtplib.SMTP(host, int(port), timeout=10) as smtp:
    for rcpt in recipients:
        msg = EmailMessage()
        msg["From"] = "newsletter@example.com"
        msg["To"] = rcpt
        msg["Subject"] = "Our news"
        msg["Message-ID"] = make_msgid(domain="example.com")
        msg.set_content("Hello!\n")
        smtp.send_message(msg)  # raises on a 4xx or 5xx: the whole job fails
