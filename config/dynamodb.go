package config

import (
	"fmt"
	"slices"
)

// Checks of the DynamoDB source and DynamoDB/Alternator target blocks.

func (a AWSAccess) check(at string) []error {
	var errs []error
	if a.Region == "" && a.Endpoint == "" {
		errs = append(errs, fmt.Errorf("%s: set region (AWS) or endpoint (Alternator, an emulator)", at))
	}
	if (a.AccessKey == "") != (a.SecretKey == "") {
		errs = append(errs, fmt.Errorf("%s: accessKey and secretKey go together", at))
	}
	return errs
}

func (d DynamoDBSource) check(at string) []error {
	errs := d.AWSAccess.check(at)
	if d.ScanSegments < 1 || d.ScanSegments > 1000000 {
		errs = append(errs, fmt.Errorf("%s.scanSegments: %d is outside 1..1000000", at, d.ScanSegments))
	}
	for _, s := range d.SkipSegments {
		if s < 0 || s >= d.ScanSegments {
			errs = append(errs, fmt.Errorf("%s.skipSegments: %d is not a segment of 0..%d", at, s, d.ScanSegments-1))
		}
	}
	if d.StreamStart != "trim_horizon" && d.StreamStart != "latest" {
		errs = append(errs, fmt.Errorf("%s.streamStart: %q is not trim_horizon or latest", at, d.StreamStart))
	}
	if d.ReadThroughput < 0 {
		errs = append(errs, fmt.Errorf("%s.readThroughput: must not be negative", at))
	}
	if d.ReadThroughputPercent < 0 || d.ReadThroughputPercent > 1.5 {
		errs = append(errs, fmt.Errorf("%s.readThroughputPercent: %v is outside 0..1.5", at, d.ReadThroughputPercent))
	}
	return errs
}

func (d DynamoDBTarget) check(at, typ string) []error {
	errs := d.AWSAccess.check(at)
	if d.BatchItems < 1 || (typ == "dynamodb" && d.BatchItems > 25) {
		errs = append(errs, fmt.Errorf("%s.batchItems: %d is outside 1..25 (DynamoDB's BatchWriteItem limit; Alternator takes more with type: alternator)", at, d.BatchItems))
	}
	if d.WriteParallelism < 1 {
		errs = append(errs, fmt.Errorf("%s.writeParallelism: must be positive", at))
	}
	if d.BillingMode != "" && !slices.Contains([]string{"PROVISIONED", "PAY_PER_REQUEST"}, d.BillingMode) {
		errs = append(errs, fmt.Errorf("%s.billingMode: %q is not PROVISIONED or PAY_PER_REQUEST", at, d.BillingMode))
	}
	return errs
}
