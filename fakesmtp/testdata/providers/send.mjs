// Sends through one provider's own Node.js SDK, pointed at onecopy's fake
// provider APIs by the SDK's own base-URL setting, and prints what each
// step got as one JSON line. fakesmtp's tests run it and check the counts.
//
//   ONECOPY_API_URL=http://127.0.0.1:PORT node send.mjs PROVIDER
//
// PROVIDER is ses, sendgrid, mailgun, postmark or resend. The steps: one
// message to one address; one to two To, a Cc and a Bcc with a Message-ID;
// a batch of two where the API has one; one to reject@PROVIDER.test,
// which the test's fault layer refuses (the SDK must report the
// provider's own error for it). Addresses are STEP@PROVIDER.test.

const provider = process.argv[2];
const base = process.env.ONECOPY_API_URL;
if (!provider || !base) {
  console.error('usage: ONECOPY_API_URL=http://127.0.0.1:PORT node send.mjs ses|sendgrid|mailgun|postmark|resend');
  process.exit(2);
}
const at = (local) => `${local}@${provider}.test`;
const from = 'sender@onecopy.test';
const messageId = `<multi.${provider}@onecopy.test>`;

// Each sender returns what the SDK reported for each step; an SDK error
// on a step that should succeed throws.
const senders = {
  async ses() {
    const { SESv2Client, SendEmailCommand } = await import('@aws-sdk/client-sesv2');
    const client = new SESv2Client({
      region: 'us-east-1',
      endpoint: base,
      credentials: { accessKeyId: 'AKIDONECOPY', secretAccessKey: 'secret' },
      maxAttempts: 1,
    });
    const send = (dest, headers = []) => client.send(new SendEmailCommand({
      FromEmailAddress: from,
      Destination: dest,
      Content: { Simple: { Subject: { Data: 'hi' }, Body: { Text: { Data: 'hello' } }, Headers: headers } },
    }));
    const one = await send({ ToAddresses: [at('single')] });
    const multi = await send(
      { ToAddresses: [at('to1'), at('to2')], CcAddresses: [at('cc')], BccAddresses: [at('bcc')] },
      [{ Name: 'Message-ID', Value: messageId }],
    );
    let reject;
    try {
      await send({ ToAddresses: [at('reject')] });
    } catch (err) {
      reject = { name: err.name, status: err.$metadata?.httpStatusCode };
    }
    return { single: one.MessageId, multi: multi.MessageId, reject };
  },

  async sendgrid() {
    const { default: sgMail } = await import('@sendgrid/mail');
    sgMail.setApiKey('SG.onecopy');
    sgMail.client.setDefaultRequest('baseUrl', base); // after setApiKey, which resets it
    const msg = { from, subject: 'hi', text: 'hello' };
    const [one] = await sgMail.send({ ...msg, to: at('single') });
    const [multi] = await sgMail.send({ ...msg, to: [at('to1'), at('to2')], cc: at('cc'), bcc: at('bcc'), headers: { 'Message-ID': messageId } });
    const [batch] = await sgMail.sendMultiple({ ...msg, to: [at('batch1'), at('batch2')] }); // one personalization each
    let reject;
    try {
      await sgMail.send({ ...msg, to: at('reject') });
    } catch (err) {
      reject = { name: err.name, status: err.code, field: err.response?.body?.errors?.[0]?.field };
    }
    return {
      single: one.headers['x-message-id'], singleStatus: one.statusCode,
      multi: multi.headers['x-message-id'], batch: batch.headers['x-message-id'], reject,
    };
  },

  async mailgun() {
    const { default: FormData } = await import('form-data');
    const { default: Mailgun } = await import('mailgun.js');
    const mg = new Mailgun(FormData).client({ username: 'api', key: 'key-onecopy', url: base });
    const msg = { from, subject: 'hi', text: 'hello' };
    const domain = 'mg.onecopy.test';
    const one = await mg.messages.create(domain, { ...msg, to: [at('single')] });
    const multi = await mg.messages.create(domain, { ...msg, to: [at('to1'), at('to2')], cc: at('cc'), bcc: at('bcc'), 'h:Message-Id': messageId });
    const batch = await mg.messages.create(domain, {
      ...msg, to: [at('batch1'), at('batch2')],
      'recipient-variables': JSON.stringify({ [at('batch1')]: { n: 1 }, [at('batch2')]: { n: 2 } }),
    });
    let reject;
    try {
      await mg.messages.create(domain, { ...msg, to: [at('reject')] });
    } catch (err) {
      reject = { name: err.type, status: err.status, details: err.details };
    }
    return { single: one.id, multi: multi.id, batch: batch.id, reject };
  },

  async postmark() {
    const postmark = await import('postmark');
    const url = new URL(base);
    const client = new postmark.ServerClient('onecopy-server-token', { useHttps: url.protocol === 'https:', requestHost: url.host });
    const msg = { From: from, Subject: 'hi', TextBody: 'hello' };
    const one = await client.sendEmail({ ...msg, To: at('single') });
    const multi = await client.sendEmail({
      ...msg, To: `${at('to1')}, Two <${at('to2')}>`, Cc: at('cc'), Bcc: at('bcc'),
      Headers: [{ Name: 'Message-ID', Value: messageId }],
    });
    const batch = await client.sendEmailBatch([{ ...msg, To: at('batch1') }, { ...msg, To: at('batch2') }]);
    let reject;
    try {
      await client.sendEmail({ ...msg, To: at('reject') });
    } catch (err) {
      reject = { name: err.name, status: err.statusCode, code: err.code, recipients: err.recipients };
    }
    return { single: one.MessageID, multi: multi.MessageID, batch: batch.map((r) => r.MessageID), reject };
  },

  async resend() {
    process.env.RESEND_BASE_URL = base; // the SDK's own variable
    const { Resend } = await import('resend');
    const resend = new Resend('re_onecopy');
    const msg = { from, subject: 'hi', text: 'hello' };
    const check = ({ data, error }) => {
      if (error) throw new Error(`resend: ${JSON.stringify(error)}`);
      return data;
    };
    const one = check(await resend.emails.send({ ...msg, to: at('single') }, { idempotencyKey: `single/${provider}` }));
    const again = check(await resend.emails.send({ ...msg, to: at('single') }, { idempotencyKey: `single/${provider}` }));
    const multi = check(await resend.emails.send({ ...msg, to: [at('to1'), at('to2')], cc: at('cc'), bcc: [at('bcc')], headers: { 'Message-ID': messageId } }));
    const batch = check(await resend.batch.send([{ ...msg, to: at('batch1') }, { ...msg, to: at('batch2') }]));
    const { error } = await resend.emails.send({ ...msg, to: at('reject') });
    return {
      single: one.id, replayed: again.id, multi: multi.id, batch: batch.data.map((e) => e.id),
      reject: error && { name: error.name, status: error.statusCode },
    };
  },
};

if (!senders[provider]) {
  console.error(`unknown provider ${provider}: want one of ${Object.keys(senders).join(', ')}`);
  process.exit(2);
}
// The SDKs log their API errors to the console outside production.
process.env.NODE_ENV = 'production';
try {
  console.log(JSON.stringify(await senders[provider]()));
} catch (err) {
  console.error(`${provider}: ${err.stack || err}`);
  process.exit(1);
}
