package kms

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"strings"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ClientOptions say how to reach Cloud KMS.
type ClientOptions struct {
	// Endpoint is host:port of the KMS gRPC API ("": Cloud KMS,
	// cloudkms.googleapis.com:443, over TLS).
	Endpoint string
	// Insecure speaks plaintext gRPC to Endpoint, which must then be a
	// loopback address: for the local fakes of tests and the demo only. The
	// bearer token still goes with every call, so it must never leave the
	// machine.
	Insecure bool
	// TokenSource authenticates the calls; nil: Application Default
	// Credentials (what `mcbn psk seal` uses on a participant's machine).
	TokenSource oauth2.TokenSource
}

// checkInsecureEndpoint refuses plaintext gRPC to anything but loopback.
func checkInsecureEndpoint(ep string) error {
	host, port, err := net.SplitHostPort(ep)
	if err != nil || port == "" {
		return fmt.Errorf("KMS endpoint %s is not host:port", clip(ep, 100))
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("plaintext KMS endpoint %s is not a loopback address (the bearer token would cross the network in clear)", clip(ep, 100))
	}
	return nil
}

// client wraps the Cloud KMS client with integrity-checked Encrypt and
// Decrypt.
type client struct {
	kc   *kmsapi.KeyManagementClient
	conn *grpc.ClientConn // ours to close, for Insecure
}

func newClient(ctx context.Context, o ClientOptions) (*client, error) {
	var opts []option.ClientOption
	c := new(client)
	if o.Insecure {
		if err := checkInsecureEndpoint(o.Endpoint); err != nil {
			return nil, err
		}
		if o.TokenSource == nil {
			return nil, errors.New("a plaintext KMS endpoint needs an explicit token source")
		}
		// The library only attaches tokens over TLS, so the connection is
		// ours, with per-call credentials that allow plaintext (loopback
		// only, checked above).
		conn, err := grpc.NewClient(o.Endpoint,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(bearerCreds{o.TokenSource}))
		if err != nil {
			return nil, fmt.Errorf("KMS endpoint %s: %v", o.Endpoint, err)
		}
		c.conn = conn
		opts = append(opts, option.WithGRPCConn(conn))
	} else {
		if o.Endpoint != "" {
			opts = append(opts, option.WithEndpoint(o.Endpoint))
		}
		if o.TokenSource != nil {
			opts = append(opts, option.WithTokenSource(o.TokenSource))
		}
	}
	kc, err := kmsapi.NewKeyManagementClient(ctx, opts...)
	if err != nil {
		if c.conn != nil {
			c.conn.Close()
		}
		return nil, fmt.Errorf("starting the KMS client: %v", err)
	}
	c.kc = kc
	return c, nil
}

func (c *client) Close() {
	c.kc.Close()
	if c.conn != nil {
		c.conn.Close()
	}
}

// bearerCreds sends an OAuth2 access token on every call without requiring
// transport security (used only for a loopback endpoint).
type bearerCreds struct{ ts oauth2.TokenSource }

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	t, err := b.ts.Token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": t.Type() + " " + t.AccessToken}, nil
}

func (bearerCreds) RequireTransportSecurity() bool { return false }

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, crcTable)) }

// encrypt seals plaintext under key with aad, with the CRC32C integrity
// checks Cloud KMS recommends in both directions. It returns the
// ciphertext and the key version KMS used.
func (c *client) encrypt(ctx context.Context, key string, plaintext, aad []byte) ([]byte, string, error) {
	resp, err := c.kc.Encrypt(ctx, &kmspb.EncryptRequest{
		Name:                              key,
		Plaintext:                         plaintext,
		AdditionalAuthenticatedData:       aad,
		PlaintextCrc32C:                   wrapperspb.Int64(crc32c(plaintext)),
		AdditionalAuthenticatedDataCrc32C: wrapperspb.Int64(crc32c(aad)),
	})
	if err != nil {
		return nil, "", err
	}
	if !resp.VerifiedPlaintextCrc32C || !resp.VerifiedAdditionalAuthenticatedDataCrc32C {
		return nil, "", errors.New("KMS Encrypt did not verify the request checksums (corrupted in transit?)")
	}
	if resp.CiphertextCrc32C == nil || resp.CiphertextCrc32C.Value != crc32c(resp.Ciphertext) {
		return nil, "", errors.New("KMS Encrypt response checksum does not match the ciphertext (corrupted in transit?)")
	}
	if !strings.HasPrefix(resp.Name, key+"/cryptoKeyVersions/") {
		return nil, "", fmt.Errorf("KMS Encrypt answered for key version %s, not a version of %s", clip(resp.Name, 200), key)
	}
	return resp.Ciphertext, resp.Name, nil
}

// errChecksum marks a Decrypt response whose checksum does not match.
var errChecksum = errors.New("KMS Decrypt response checksum does not match the plaintext (corrupted in transit?)")

// decrypt opens ciphertext under key with aad, checking CRC32C both ways.
func (c *client) decrypt(ctx context.Context, key string, ciphertext, aad []byte) ([]byte, error) {
	resp, err := c.kc.Decrypt(ctx, &kmspb.DecryptRequest{
		Name:                              key,
		Ciphertext:                        ciphertext,
		AdditionalAuthenticatedData:       aad,
		CiphertextCrc32C:                  wrapperspb.Int64(crc32c(ciphertext)),
		AdditionalAuthenticatedDataCrc32C: wrapperspb.Int64(crc32c(aad)),
	})
	if err != nil {
		return nil, err
	}
	if resp.PlaintextCrc32C == nil || resp.PlaintextCrc32C.Value != crc32c(resp.Plaintext) {
		clear(resp.Plaintext)
		return nil, errChecksum
	}
	return resp.Plaintext, nil
}

// classifyKMS maps a KMS call error to a class. name is the participant;
// secret (the access token) is redacted from any server message.
func classifyKMS(ctx context.Context, name, op, key string, err error, timeout, secret string) error {
	if errors.Is(err, errChecksum) {
		return classed(name, ErrUnreachable, "%s %s: %v", op, key, err)
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		if errors.Is(ctx.Err(), context.Canceled) {
			return classed(name, context.Canceled, "%s %s: canceled", op, key)
		}
		return classed(name, ErrUnreachable, "%s %s: no answer within %s", op, key, timeout)
	}
	st, ok := status.FromError(err)
	if !ok {
		return classed(name, ErrUnreachable, "%s %s: %s", op, key, clip(redact(err.Error(), secret), 200))
	}
	msg := clip(redact(st.Message(), secret), 200)
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated:
		return classed(name, ErrPermissionDenied, "%s %s refused (%s): %s", op, key, st.Code(), msg)
	case codes.FailedPrecondition:
		return classed(name, ErrKeyDisabled, "%s %s: %s", op, key, msg)
	case codes.InvalidArgument:
		return classed(name, ErrInvalidShare, "%s %s could not decrypt the sealed share (tampered ciphertext, another key, or sealed for another group or participant: the additional authenticated data does not match): %s", op, key, msg)
	case codes.NotFound:
		return classed(name, ErrPermissionDenied, "%s %s: key not found (or not visible to this identity): %s", op, key, msg)
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Unknown, codes.Aborted:
		return classed(name, ErrUnreachable, "%s %s (%s): %s", op, key, st.Code(), msg)
	}
	return classed(name, ErrUnreachable, "%s %s failed (%s): %s", op, key, st.Code(), msg)
}
