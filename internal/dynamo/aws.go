package dynamo

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams"
)

// AWSConfig builds the SDK settings for an endpoint. Credentials come from
// the config block or the standard environment variables; they live only in
// memory.
func AWSConfig(a config.AWSAccess) aws.Config {
	region := a.Region
	if region == "" {
		region = "us-east-1" // an endpoint (Alternator, an emulator) still signs with a region
	}
	cfg := aws.Config{
		Region: region,
		// Throttling is retried by the SDK and again, without end, by
		// ferry's own loops; the SDK's client-side retry quota would
		// otherwise turn a throttled table into hard errors.
		Retryer: func() aws.Retryer {
			return retry.AddWithMaxAttempts(retry.NewStandard(func(o *retry.StandardOptions) {
				o.RateLimiter = ratelimit.None
				o.Backoff = backoff{}
			}), 10)
		},
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			if a.AccessKey != "" {
				return aws.Credentials{AccessKeyID: a.AccessKey, SecretAccessKey: a.SecretKey, SessionToken: a.SessionToken, Source: "ferry config"}, nil
			}
			id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
			if id == "" || secret == "" {
				return aws.Credentials{}, errors.New("no AWS credentials: set accessKey/secretKey or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
			}
			return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN"), Source: "environment"}, nil
		}),
	}
	if a.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(a.Endpoint)
	}
	return cfg
}

// backoff waits 50 ms × 2^attempt, jittered, at most 5 s: the SDK's own
// (up to 2^attempt seconds) leaves a briefly throttled table idle for
// seconds at a time.
type backoff struct{}

func (backoff) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	d := 50 * time.Millisecond << min(attempt, 7)
	d = min(d, 5*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1)), nil
}

// Where names the endpoint for messages (never the credentials).
func Where(a config.AWSAccess) string {
	if a.Endpoint != "" {
		return a.Endpoint
	}
	return "region " + a.Region
}

// IsThrottle reports whether err is DynamoDB asking to slow down.
func IsThrottle(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "LimitExceededException":
		return true
	}
	return false
}

// IsValidation reports whether err is DynamoDB refusing the request's data.
func IsValidation(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ValidationException"
}

// IsNotFound reports whether err says the table does not exist.
func IsNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException"
}

// TableDesc is a source table's description as the DynamoDB source stores
// it in KV (DescKey): what a target needs to create the table.
type TableDesc struct {
	Name         string      `json:"name"`
	HashKey      KeyAttr     `json:"hashKey"`
	RangeKey     *KeyAttr    `json:"rangeKey,omitempty"`
	Attributes   []KeyAttr   `json:"attributes"` // every attribute an index names, with its type
	BillingMode  string      `json:"billingMode"`
	ReadUnits    int64       `json:"readUnits,omitempty"`
	WriteUnits   int64       `json:"writeUnits,omitempty"`
	GSIs         []IndexDesc `json:"gsis,omitempty"`
	LSIs         []IndexDesc `json:"lsis,omitempty"`
	TTLAttribute string      `json:"ttlAttribute,omitempty"` // empty: TTL off
	ItemCount    int64       `json:"itemCount"`
	StreamView   string      `json:"streamView,omitempty"`
}

// KeyAttr is an attribute and its scalar type (S, N, B).
type KeyAttr struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// IndexDesc is a secondary index.
type IndexDesc struct {
	Name             string   `json:"name"`
	HashKey          string   `json:"hashKey"`
	RangeKey         string   `json:"rangeKey,omitempty"`
	Projection       string   `json:"projection"`
	NonKeyAttributes []string `json:"nonKeyAttributes,omitempty"`
	ReadUnits        int64    `json:"readUnits,omitempty"`
	WriteUnits       int64    `json:"writeUnits,omitempty"`
}

// KeyNames lists the key attributes, hash key first.
func (d *TableDesc) KeyNames() []string {
	if d.RangeKey != nil {
		return []string{d.HashKey.Name, d.RangeKey.Name}
	}
	return []string{d.HashKey.Name}
}

// DescKey is the KV key of a table's TableDesc.
func DescKey(source, table string) string { return streams.SourceKey(source, "dynamodb", table) }

// Describe turns a DescribeTable answer (and the TTL attribute) into a
// TableDesc.
func Describe(t *types.TableDescription, ttlAttr string) *TableDesc {
	d := &TableDesc{Name: aws.ToString(t.TableName), TTLAttribute: ttlAttr, ItemCount: aws.ToInt64(t.ItemCount), BillingMode: "PROVISIONED"}
	typ := map[string]string{}
	for _, a := range t.AttributeDefinitions {
		typ[aws.ToString(a.AttributeName)] = string(a.AttributeType)
		d.Attributes = append(d.Attributes, KeyAttr{Name: aws.ToString(a.AttributeName), Type: string(a.AttributeType)})
	}
	for _, k := range t.KeySchema {
		ka := KeyAttr{Name: aws.ToString(k.AttributeName), Type: typ[aws.ToString(k.AttributeName)]}
		if k.KeyType == types.KeyTypeHash {
			d.HashKey = ka
		} else {
			d.RangeKey = &ka
		}
	}
	if t.BillingModeSummary != nil && t.BillingModeSummary.BillingMode != "" {
		d.BillingMode = string(t.BillingModeSummary.BillingMode)
	}
	if pt := t.ProvisionedThroughput; pt != nil {
		d.ReadUnits, d.WriteUnits = aws.ToInt64(pt.ReadCapacityUnits), aws.ToInt64(pt.WriteCapacityUnits)
	}
	if d.BillingMode == "PROVISIONED" && d.ReadUnits == 0 {
		d.BillingMode = "PAY_PER_REQUEST"
	}
	index := func(name *string, ks []types.KeySchemaElement, p *types.Projection, pt *types.ProvisionedThroughputDescription) IndexDesc {
		ix := IndexDesc{Name: aws.ToString(name), Projection: "ALL"}
		for _, k := range ks {
			if k.KeyType == types.KeyTypeHash {
				ix.HashKey = aws.ToString(k.AttributeName)
			} else {
				ix.RangeKey = aws.ToString(k.AttributeName)
			}
		}
		if p != nil {
			ix.Projection = string(p.ProjectionType)
			ix.NonKeyAttributes = p.NonKeyAttributes
		}
		if pt != nil {
			ix.ReadUnits, ix.WriteUnits = aws.ToInt64(pt.ReadCapacityUnits), aws.ToInt64(pt.WriteCapacityUnits)
		}
		return ix
	}
	for _, g := range t.GlobalSecondaryIndexes {
		d.GSIs = append(d.GSIs, index(g.IndexName, g.KeySchema, g.Projection, g.ProvisionedThroughput))
	}
	for _, l := range t.LocalSecondaryIndexes {
		d.LSIs = append(d.LSIs, index(l.IndexName, l.KeySchema, l.Projection, nil))
	}
	if s := t.StreamSpecification; s != nil && aws.ToBool(s.StreamEnabled) {
		d.StreamView = string(s.StreamViewType)
	}
	return d
}

// Scrub hides the access keys of a in err's message (an endpoint may quote
// a credential back in an error), keeping what errors.Is and errors.As see.
func Scrub(err error, a config.AWSAccess) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range []string{a.SecretKey, a.SessionToken, a.AccessKey} {
		if s != "" {
			clean = strings.ReplaceAll(clean, s, "xxxxx")
		}
	}
	if clean == msg {
		return err
	}
	return &scrubbed{msg: clean, err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }
