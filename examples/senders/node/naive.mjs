// The buggy job, on nodemailer: one loop over the list, a fresh
// Message-ID every time (nodemailer's default), no memory between
// attempts. Any error ends the attempt, and the job runner (onecopy)
// starts it again from the top.
import { readFileSync } from "node:fs";
import nodemailer from "nodemailer";

const [host, port] = process.env.ONECOPY_SMTP_ADDR.split(":");
const list = readFileSync(process.env.ONECOPY_RECIPIENTS, "utf8").split("\n").map((l) => l.trim()).filter(Boolean);
const transport = nodemailer.createTransport({ host, port: Number(port), secure: false, ignoreTLS: true });
for (const to of list) {
  await transport.sendMail({ from: "newsletter@example.com", to, subject: "Our news", text: "Hello!\n" });
}
transport.close();
