package shareholder

import (
	"context"
	"fmt"
	"hash/crc32"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/mcbn/mcbn/psk"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// secretManagerStore reads the share from a GCP Secret Manager secret
// version whose payload is the share file. Credentials come from the
// environment (Application Default Credentials) unless opts say otherwise.
type secretManagerStore struct {
	name   string
	client *secretmanager.Client
}

func newSecretManagerStore(ctx context.Context, name string, opts ...option.ClientOption) (*secretManagerStore, error) {
	c, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("secret manager client: %v", err)
	}
	return &secretManagerStore{name: name, client: c}, nil
}

func (s *secretManagerStore) LoadShare(ctx context.Context) (*psk.Share, error) {
	resp, err := s.client.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: s.name})
	if err != nil {
		// The status message comes from the server and never holds the payload.
		return nil, fmt.Errorf("%s: %s: %s", s, status.Code(err), status.Convert(err).Message())
	}
	data := resp.GetPayload().GetData()
	defer psk.Wipe(data)
	if want := resp.GetPayload().DataCrc32C; want != nil && int64(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))) != *want {
		return nil, fmt.Errorf("%s: payload checksum mismatch (corrupted in transit)", s)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: %s: empty payload", s, codes.NotFound)
	}
	sh, err := psk.ParseShare(data)
	if err != nil {
		return nil, fmt.Errorf("%s: payload is not a share file: %w", s, err)
	}
	return sh, nil
}

func (s *secretManagerStore) String() string { return "gcpsm://" + s.name }
func (s *secretManagerStore) Close() error   { return s.client.Close() }
