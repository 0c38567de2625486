// nodemailer as a production sender configures it: STARTTLS required and
// verified against a CA file, AUTH, a pool of connections; then implicit
// TLS. Usage: node send.js HOST PORT TLSPORT CAFILE
'use strict';
const fs = require('fs');
const nodemailer = require('nodemailer');

const [host, port, tlsPort, caFile] = process.argv.slice(2);
const ca = fs.readFileSync(caFile);

async function main() {
  const pooled = nodemailer.createTransport({
    host, port: Number(port), secure: false, requireTLS: true,
    auth: { user: 'node', pass: 'pw' }, tls: { ca },
    pool: true, maxConnections: 2, maxMessages: 3,
  });
  const sends = [];
  for (let i = 0; i < 6; i++) {
    sends.push(pooled.sendMail({
      from: 'a@x.test', to: i % 2 ? 'Bob@Example.COM' : 'bob@example.com', cc: 'carol@x.test',
      subject: 'pooled ' + i, text: 'hello\n.\nfrom nodemailer ' + i, messageId: '<node' + i + '@x>',
    }));
  }
  await Promise.all(sends);
  pooled.close();

  const implicit = nodemailer.createTransport({
    host, port: Number(tlsPort), secure: true, auth: { user: 'node', pass: 'pw' }, tls: { ca },
  });
  await implicit.sendMail({ from: 'a@x.test', to: 'ärger@bücher.test', subject: 'utf-8', text: 'hi', messageId: '<node-utf8@x>' });
  implicit.close();
  console.log('sent');
}

main().catch((e) => { console.error(e); process.exit(1); });
