package backup

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `etcdops backup check` reads the configuration and its credentials file
// as a run does, and says what is wrong without printing a credential.
func TestCheckCommand(t *testing.T) {
	const secret = "s3cr3t-Never-Printed"
	for _, tc := range []struct {
		name, conf, creds string
		credsMode         os.FileMode
		want              string
		status            int
	}{
		{"valid", "[schedule]\nperiod = 6h\n[s3]\nendpoint = https://127.0.0.1:9\nbucket = b\ncredentials_file = CREDS\n",
			"access_key_id = \"AK\"\nsecret_access_key = \"" + secret + "\"\n", 0o600, "the backup configuration is valid", 0},
		{"bad period", "[schedule]\nperiod = often\n", "", 0o600, "[schedule] period", 1},
		{"credentials readable by others", "[s3]\nendpoint = https://127.0.0.1:9\nbucket = b\ncredentials_file = CREDS\n",
			"access_key_id = AK\nsecret_access_key = " + secret + "\n", 0o644, "must be readable by its owner only", 1},
		{"secret missing", "[s3]\nendpoint = https://127.0.0.1:9\nbucket = b\ncredentials_file = CREDS\n",
			"access_key_id = " + secret + "\n", 0o600, "access_key_id and secret_access_key are both needed", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			creds := filepath.Join(dir, "credentials")
			if err := os.WriteFile(creds, []byte(tc.creds), tc.credsMode); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(dir, "backup.conf")
			if err := os.WriteFile(conf, []byte(strings.ReplaceAll(tc.conf, "CREDS", creds)), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			status := Main([]string{"check", "--config", conf}, &out, &errOut)
			all := out.String() + errOut.String()
			if status != tc.status || !strings.Contains(all, tc.want) {
				t.Fatalf("status %d (want %d), output %q (want %q in it)", status, tc.status, all, tc.want)
			}
			if strings.Contains(all, secret) {
				t.Fatalf("the output shows the secret: %q", all)
			}
		})
	}
}
