package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/oauth2"

	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/kms"
	"github.com/mcbn/mcbn/kms/kmsfake"
	"github.com/mcbn/mcbn/psk"
)

// The KMS participant of `mcbn demo --kms`: carol keeps her share sealed
// under her own Cloud KMS key instead of running a daemon. The names are
// what a real participant would have; the STS and KMS behind them are the
// local fakes of package kmsfake.
const (
	kmsParticipant = "carol"
	kmsKeyName     = "projects/carol-project/locations/global/keyRings/mcbn/cryptoKeys/share"
	kmsUser        = "carol@example.com"
	kmsProject     = "123456789012"
	kmsPool        = "mcbn-proxies"
	kmsProvider    = "attestation"
)

// kmsCarol is carol's Cloud KMS side: the fakes, and the key version that
// sealed her share (disabling it is how she withdraws consent).
type kmsCarol struct {
	fake    *kmsfake.Server
	version string
	entry   gather.ShareholderConfig
}

// startKMS starts the STS/KMS fakes, sets up carol's workload identity
// provider and key as she would in her own project, seals her share under
// the key and removes the plain share file, so that from then on her share
// exists only sealed. issuer is the dev attester's; the provider trusts its
// tokens only for the demo image, as the daemons' policy does.
func startKMS(ctx context.Context, n *narrator, dir string, k *keyFiles, issuer string, o Options) (*kmsCarol, error) {
	fake, err := kmsfake.Start(kmsfake.Config{Logger: o.Log.With("component", "kmsfake")})
	if err != nil {
		return nil, err
	}
	c := &kmsCarol{fake: fake}
	if err := c.setup(ctx, n, dir, k, issuer); err != nil {
		fake.Close()
		return nil, err
	}
	return c, nil
}

func (c *kmsCarol) setup(ctx context.Context, n *narrator, dir string, k *keyFiles, issuer string) error {
	n.say("== carol is a Cloud KMS participant: starting local STS and Cloud KMS fakes (they stand in for Google's; nothing leaves this machine)")
	// The same rule as the daemons' policy: the dev attester's tokens, for
	// the demo image only. Any other image gets no federated token, hence
	// no decrypt.
	p := kmsfake.Provider{
		ProjectNumber: kmsProject, Pool: kmsPool, ID: kmsProvider, Issuer: issuer,
		AttributeMapping: map[string]string{
			"google.subject":         "assertion.sub",
			"attribute.image_digest": "assertion.submods.container.image_digest",
		},
		Condition: "assertion.swname == 'MCBN_DEV_ATTESTER' && assertion.submods.container.image_digest == '" + demoDigest + "'",
	}
	aud, err := c.fake.AddProvider(p)
	if err != nil {
		return fmt.Errorf("kms fake: provider: %w", err)
	}
	if err := c.fake.CreateKey(kmsKeyName); err != nil {
		return fmt.Errorf("kms fake: key: %w", err)
	}
	// Decrypt only for attested proxies of the pool; carol herself may
	// only encrypt (seal), not decrypt.
	c.fake.Grant(kmsKeyName, kmsfake.RoleDecrypter, p.PrincipalSet())
	c.fake.Grant(kmsKeyName, kmsfake.RoleEncrypter, "user:"+kmsUser)
	n.say("   carol's workload identity provider trusts attested proxies running image %s…; only they may decrypt with her key", demoDigest[:19])

	share, err := psk.LoadShare(k.shareP[kmsParticipant])
	if err != nil {
		return fmt.Errorf("carol's share: %w", err)
	}
	defer share.Wipe()
	user := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: c.fake.UserToken(kmsUser), TokenType: "Bearer"})
	sealed, err := kms.Seal(ctx, kms.ClientOptions{Endpoint: c.fake.KMSEndpoint(), Insecure: true, TokenSource: user}, kmsKeyName, share)
	if err != nil {
		return fmt.Errorf("seal carol's share: %w", err)
	}
	path := filepath.Join(dir, kmsParticipant+".share.kms.json")
	if err := kms.WriteSealed(path, sealed); err != nil {
		return fmt.Errorf("write carol's sealed share: %w", err)
	}
	if err := os.Remove(k.shareP[kmsParticipant]); err != nil {
		return fmt.Errorf("remove carol's plain share: %w", err)
	}
	delete(k.shareP, kmsParticipant)
	c.version = sealed.KeyVersion
	n.say("   carol sealed her share with key version %s and removed the plain share file", c.version)

	opts, err := gather.NewOptions(kms.Options{
		SealedShare: path, KMSKey: kmsKeyName, WIFAudience: aud,
		// A fresh token from the proxy's attestation provider (here the dev
		// attester) for each fetch, as the launcher's socket gives one.
		TokenSource: kms.TokenFromLauncher,
		STSEndpoint: c.fake.STSURL(), IAMCredentialsEndpoint: c.fake.IAMCredentialsURL(),
		KMSEndpoint: c.fake.KMSEndpoint(), KMSInsecure: true,
	})
	if err != nil {
		return err
	}
	c.entry = gather.ShareholderConfig{Name: kmsParticipant, Kind: kms.KindKMS, Options: opts}
	return nil
}

// setEnabled disables or enables the key version that sealed carol's
// share: her consent, decided in her own project.
func (c *kmsCarol) setEnabled(on bool) error {
	if on {
		return c.fake.EnableVersion(c.version)
	}
	return c.fake.DisableVersion(c.version)
}

func (c *kmsCarol) close() {
	if c != nil && c.fake != nil {
		c.fake.Close()
	}
}
