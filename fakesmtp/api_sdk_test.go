// The AWS SDK for Go v2 against the fake SES, unchanged but for its
// endpoint: sesv2 and the v1 ses client, pointed at the fake by the
// BaseEndpoint option or the AWS_ENDPOINT_URL_SES(V2) variables, signing
// with static credentials the fake does not verify.

package fakesmtp_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	sesv1types "github.com/aws/aws-sdk-go-v2/service/ses/types"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"

	"github.com/onecopy/onecopy/fakesmtp"
)

// isolateAWS keeps the SDK away from the machine's AWS files and
// variables for the rest of the test.
func isolateAWS(t *testing.T) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	for _, v := range []string{"AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SES", "AWS_ENDPOINT_URL_SESV2", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if _, ok := os.LookupEnv(v); ok {
			t.Setenv(v, "") // restored after the test
			os.Unsetenv(v)
		}
	}
}

// awsConfig is the SDK's own configuration loader with static
// credentials, the region, and opts.
func awsConfig(t *testing.T, accessKey string, opts ...func(*config.LoadOptions) error) aws.Config {
	t.Helper()
	opts = append([]func(*config.LoadOptions) error{
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(accessKey, "secret", "")),
	}, opts...)
	cfg, err := config.LoadDefaultConfig(t.Context(), opts...)
	if err != nil {
		t.Fatalf("loading the SDK's configuration: %v", err)
	}
	return cfg
}

func sesV2Client(t *testing.T, rig *apiRig, opts ...func(*config.LoadOptions) error) *sesv2.Client {
	t.Helper()
	isolateAWS(t)
	cfg := awsConfig(t, "AKIDONECOPY", opts...)
	return sesv2.NewFromConfig(cfg, func(o *sesv2.Options) { o.BaseEndpoint = aws.String(rig.base) })
}

func simple(subject string, headers ...types.MessageHeader) *types.EmailContent {
	return &types.EmailContent{Simple: &types.Message{
		Subject: &types.Content{Data: aws.String(subject)},
		Body:    &types.Body{Text: &types.Content{Data: aws.String("hello")}},
		Headers: headers,
	}}
}

func TestSDKSESv2(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	c := sesV2Client(t, rig)
	ctx := t.Context()
	out, err := c.SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("a@x.test"),
		Destination:      &types.Destination{ToAddresses: []string{"bob@x.test"}},
		Content:          simple("one"),
	})
	if err != nil || aws.ToString(out.MessageId) == "" {
		t.Fatalf("SendEmail: %v, %+v", err, out)
	}
	_, err = c.SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("Acme <a@x.test>"),
		Destination: &types.Destination{ToAddresses: []string{"Bob <BOB@x.test>", "carol@x.test"},
			CcAddresses: []string{"dave@x.test"}, BccAddresses: []string{"erin@x.test"}},
		Content: simple("many", types.MessageHeader{Name: aws.String("Message-ID"), Value: aws.String("<many@x>")}),
	})
	if err != nil {
		t.Fatalf("SendEmail to, cc and bcc: %v", err)
	}
	raw := "From: a@x.test\r\nTo: frank@x.test\r\nBcc: gina@x.test\r\nMessage-ID: <raw@x>\r\nSubject: raw\r\n\r\nbody\r\n"
	if _, err = c.SendEmail(ctx, &sesv2.SendEmailInput{Content: &types.EmailContent{Raw: &types.RawMessage{Data: []byte(raw)}}}); err != nil {
		t.Fatalf("SendEmail Raw: %v", err)
	}
	_, err = c.SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("a@x.test"),
		Destination:      &types.Destination{ToAddresses: []string{"hank@x.test"}},
		Content:          &types.EmailContent{Template: &types.Template{TemplateName: aws.String("welcome"), TemplateData: aws.String(`{"n":1}`)}},
	})
	if err != nil {
		t.Fatalf("SendEmail Template: %v", err)
	}
	rig.counts(t, map[string]int{"bob@x.test": 2, "carol@x.test": 1, "dave@x.test": 1, "erin@x.test": 1, "frank@x.test": 1, "gina@x.test": 1, "hank@x.test": 1})
	if got, _ := rig.recipients(t); got["bob@x.test"][1] != 2 {
		t.Errorf("bob: %v, want 2 distinct Message-IDs", got["bob@x.test"])
	}
}

// The SDK reads the fake's errors as SES's own types, and retries what
// SES says to retry, by itself.
func TestSDKSESv2Faults(t *testing.T) {
	ctx := t.Context()
	in := func(to, id string) *sesv2.SendEmailInput {
		return &sesv2.SendEmailInput{
			FromEmailAddress: aws.String("a@x.test"),
			Destination:      &types.Destination{ToAddresses: []string{to}},
			Content:          simple("s", types.MessageHeader{Name: aws.String("Message-ID"), Value: aws.String(id)}),
		}
	}

	rig := apiFaultServer(t, 1, "reject=bob@x.test")
	_, err := sesV2Client(t, rig).SendEmail(ctx, in("bob@x.test", "<1@x>"))
	var rejected *types.MessageRejected
	if !errors.As(err, &rejected) {
		t.Errorf("to a rejected address: %v, want *types.MessageRejected", err)
	}

	// Greylisting answers 429 TooManyRequestsException once; the SDK's
	// retryer sends again and it goes.
	rig = apiFaultServer(t, 1, "greylist")
	if _, err := sesV2Client(t, rig).SendEmail(ctx, in("carol@x.test", "<2@x>")); err != nil {
		t.Errorf("greylisted: %v, want the SDK's retry to succeed", err)
	}
	rig.counts(t, map[string]int{"carol@x.test": 1})

	// A cut after the count: the SDK retries the reset connection itself,
	// and every try is a copy of the same message, each one in doubt.
	rig = apiFaultServer(t, 1, "drop-after-data=1")
	_, err = sesV2Client(t, rig, config.WithRetryMaxAttempts(3)).SendEmail(ctx, in("dave@x.test", "<3@x>"))
	if err == nil {
		t.Fatal("every try cut, yet SendEmail succeeded")
	}
	got, _ := rig.recipients(t)
	if got["dave@x.test"] != [2]int{3, 1} {
		t.Errorf("dave: %v, want 3 copies (the SDK's 3 attempts) of one Message-ID", got["dave@x.test"])
	}
	for range 3 {
		if d := rig.rec.nextDoubt(t); !d.Delivered || d.Ended != fakesmtp.EndCut {
			t.Errorf("in doubt: %+v", d)
		}
	}

	rig = apiServer(t, fakesmtp.Options{APIKey: "AKIDRIGHT"})
	_, err = sesV2Client(t, rig).SendEmail(ctx, in("erin@x.test", "<4@x>"))
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "UnrecognizedClientException" {
		t.Errorf("signed with another access key: %v, want UnrecognizedClientException", err)
	}
}

// The v1 query API, with the endpoint from AWS_ENDPOINT_URL_SES.
func TestSDKSESv1(t *testing.T) {
	rig := apiFaultServer(t, 1, "reject=bob@x.test")
	isolateAWS(t)
	t.Setenv("AWS_ENDPOINT_URL_SES", rig.base) // the SDK's own variable for the SES service
	c := ses.NewFromConfig(awsConfig(t, "AKIDONECOPY"))
	ctx := t.Context()
	out, err := c.SendEmail(ctx, &ses.SendEmailInput{
		Source:      aws.String("a@x.test"),
		Destination: &sesv1types.Destination{ToAddresses: []string{"carol@x.test"}, CcAddresses: []string{"dave@x.test"}, BccAddresses: []string{"erin@x.test"}},
		Message: &sesv1types.Message{Subject: &sesv1types.Content{Data: aws.String("s")},
			Body: &sesv1types.Body{Text: &sesv1types.Content{Data: aws.String("t")}}},
	})
	if err != nil || aws.ToString(out.MessageId) == "" {
		t.Fatalf("SendEmail: %v %+v", err, out)
	}
	raw := "From: a@x.test\r\nTo: frank@x.test\r\nMessage-ID: <v1raw@x>\r\nSubject: raw\r\n\r\nbody\r\n"
	if _, err := c.SendRawEmail(ctx, &ses.SendRawEmailInput{RawMessage: &sesv1types.RawMessage{Data: []byte(raw)}}); err != nil {
		t.Fatalf("SendRawEmail: %v", err)
	}
	_, err = c.SendRawEmail(ctx, &ses.SendRawEmailInput{RawMessage: &sesv1types.RawMessage{Data: []byte(raw)}, Destinations: []string{"bob@x.test"}})
	var rejected *sesv1types.MessageRejected
	if !errors.As(err, &rejected) {
		t.Errorf("to a rejected address: %v, want *types.MessageRejected", err)
	}
	rig.counts(t, map[string]int{"carol@x.test": 1, "dave@x.test": 1, "erin@x.test": 1, "frank@x.test": 1})
}
