package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/etcdops/etcdops/internal/codec"
	"github.com/etcdops/etcdops/internal/modrun"
	"github.com/etcdops/etcdops/internal/objstore"
)

// ModuleSpec declares the options of the etcd_backup module.
var ModuleSpec = modrun.Spec{
	Options: []modrun.Option{
		{Name: "state", Type: modrun.TypeStr, Default: "status", Choices: []string{"status", "listed", "fetched"}},
		{Name: "config", Type: modrun.TypePath, Default: DefaultConfig},
		{Name: "endpoint", Type: modrun.TypeStr},
		{Name: "bucket", Type: modrun.TypeStr},
		{Name: "prefix", Type: modrun.TypeStr, Default: ""},
		{Name: "region", Type: modrun.TypeStr, Default: "us-east-1"},
		{Name: "path_style", Type: modrun.TypeBool, Default: true},
		{Name: "ca_file", Type: modrun.TypePath},
		{Name: "credentials_file", Type: modrun.TypePath},
		{Name: "access_key_id", Type: modrun.TypeStr, NoLog: true},
		{Name: "secret_access_key", Type: modrun.TypeStr, NoLog: true},
		{Name: "max_age", Type: modrun.TypeStr},
		{Name: "key", Type: modrun.TypeStr},
		{Name: "dest", Type: modrun.TypePath},
		{Name: "age_identity_file", Type: modrun.TypePath},
	},
	MutuallyExclusive: [][]string{{"config", "endpoint"}, {"credentials_file", "access_key_id"}, {"credentials_file", "secret_access_key"}},
	RequiredTogether:  [][]string{{"access_key_id", "secret_access_key"}},
	RequiredIf: []modrun.RequiredIf{
		{Key: "state", Value: "fetched", Requires: []string{"key", "dest"}},
	},
}

type moduleOptions struct {
	State           string `json:"state"`
	Config          string `json:"config"`
	Endpoint        string `json:"endpoint"`
	Bucket          string `json:"bucket"`
	Prefix          string `json:"prefix"`
	Region          string `json:"region"`
	PathStyle       bool   `json:"path_style"`
	CAFile          string `json:"ca_file"`
	CredentialsFile string `json:"credentials_file"`
	AccessKey       string `json:"access_key_id"`
	SecretKey       string `json:"secret_access_key"`
	MaxAge          string `json:"max_age"`
	Key             string `json:"key"`
	Dest            string `json:"dest"`
	AgeIdentityFile string `json:"age_identity_file"`
}

// source is where the module reads from: a member's backup configuration,
// or the bucket given in the task.
type source struct {
	dir     string           // the local snapshots; "" without a configuration
	s3      *objstore.Config // nil: no bucket
	secrets []string
	where   string // what the result names as its source
}

// RunModule runs the etcd_backup module.
func RunModule(ctx context.Context, m *modrun.Module) (modrun.Result, error) {
	var o moduleOptions
	if err := m.Decode(&o); err != nil {
		return nil, err
	}
	maxAge, err := MaxAge(o.MaxAge)
	if err != nil {
		return nil, err
	}
	if o.State == "fetched" && o.Endpoint != "" && o.Bucket == "" {
		// s3://bucket/key names the bucket.
		if rest, ok := strings.CutPrefix(o.Key, "s3://"); ok {
			o.Bucket, _, _ = strings.Cut(rest, "/")
		}
	}
	src, found, err := o.source()
	if err != nil {
		return nil, err
	}
	res, err := func() (modrun.Result, error) {
		switch o.State {
		case "listed":
			return list(ctx, src)
		case "fetched":
			return fetch(ctx, m, src, o)
		}
		if !found {
			return modrun.Result{"configured": false, "stale": false, "local": nil, "remote": nil,
				"msg": fmt.Sprintf("no backup configuration at %s: no scheduled backup to report", o.Config)}, nil
		}
		return status(ctx, m, src, maxAge)
	}()
	if err != nil {
		return res, errors.New(scrub(err.Error(), src.secrets))
	}
	return res, nil
}

// source reads the configuration file, or the direct options when an
// endpoint is given. found is false when, for status, the configuration
// file does not exist (the host has no schedule).
func (o moduleOptions) source() (source, bool, error) {
	if o.Endpoint == "" {
		if o.Bucket != "" || o.CredentialsFile != "" || o.AccessKey != "" {
			return source{}, false, errors.New("bucket, credentials_file and access_key_id go with endpoint (without it, config is read)")
		}
		if _, err := os.Stat(o.Config); errors.Is(err, os.ErrNotExist) && o.State == "status" {
			return source{}, false, nil
		}
		c, err := Load(o.Config)
		if err != nil {
			return source{}, false, fmt.Errorf("backup configuration: %w", err)
		}
		return source{dir: c.Dir, s3: c.S3, secrets: c.Secrets(), where: o.Config}, true, nil
	}
	cfg := objstore.Config{Endpoint: o.Endpoint, Bucket: o.Bucket, Prefix: o.Prefix, Region: o.Region,
		PathStyle: o.PathStyle, CAFile: o.CAFile, AccessKey: o.AccessKey, SecretKey: o.SecretKey}
	if o.CredentialsFile != "" {
		var err error
		if cfg.AccessKey, cfg.SecretKey, err = ReadCredentials(o.CredentialsFile); err != nil {
			return source{}, false, err
		}
	}
	if cfg.AccessKey == "" {
		return source{}, false, errors.New("endpoint is given: give credentials_file (or access_key_id and secret_access_key) too")
	}
	if _, err := objstore.New(cfg); err != nil {
		return source{}, false, err
	}
	return source{s3: &cfg, secrets: []string{cfg.SecretKey, cfg.AccessKey}, where: o.Endpoint}, true, nil
}

// store is the bucket under prefix (the configured one when prefix is nil).
func (s source) store(prefix *string) (*objstore.Store, error) {
	if s.s3 == nil {
		return nil, fmt.Errorf("%s has no [s3] section: there is no bucket", s.where)
	}
	c := *s.s3
	if prefix != nil {
		c.Prefix = *prefix
	}
	return objstore.New(c)
}

func status(ctx context.Context, m *modrun.Module, src source, maxAge time.Duration) (modrun.Result, error) {
	var store *objstore.Store
	if src.s3 != nil {
		var err error
		if store, err = src.store(nil); err != nil {
			return nil, err
		}
	}
	r, err := Status(ctx, src.dir, store, time.Now(), maxAge)
	if err != nil {
		return nil, err
	}
	if r.Warning != "" {
		m.Warn("%s", scrub(r.Warning, src.secrets))
	}
	res := modrun.Result{"configured": true, "local": r.Local, "remote": r.Remote, "last_success": r.LastSuccess,
		"last_skipped": r.LastSkipped, "newest_age_seconds": r.NewestAge, "stale": r.Stale, "msg": r.Message,
		"bucket_readable": store != nil && r.Warning == ""}
	if maxAge > 0 {
		res["max_age_seconds"] = maxAge.Seconds()
	}
	return res, nil
}

func list(ctx context.Context, src source) (modrun.Result, error) {
	store, err := src.store(nil)
	if err != nil {
		return nil, err
	}
	objs, err := store.List(ctx)
	if err != nil {
		return nil, err
	}
	if objs == nil {
		objs = []objstore.Object{}
	}
	msg := fmt.Sprintf("%d snapshots in s3://%s/%s", len(objs), src.s3.Bucket, src.s3.Prefix)
	if len(objs) > 0 {
		msg += fmt.Sprintf(", the newest %s (revision %d, by %s)", objs[0].URL, objs[0].Revision, objs[0].Member)
	}
	lines := make([]string, len(objs))
	for i, o := range objs {
		lines[i] = fmt.Sprintf("%s  revision %d  %d bytes  by %s  %s", o.Time.Format(time.RFC3339), o.Revision, o.Size, o.Member, o.URL)
	}
	return modrun.Result{"objects": objs, "lines": lines, "count": len(objs), "msg": msg}, nil
}

// fetch downloads key (s3://bucket/key or a key) to dest (a file, or a
// directory to put it in under the object's name without .zst and .age).
func fetch(ctx context.Context, m *modrun.Module, src source, o moduleOptions) (modrun.Result, error) {
	if src.s3 == nil {
		return nil, fmt.Errorf("%s has no [s3] section: there is no bucket to fetch from", src.where)
	}
	key := o.Key
	if strings.HasPrefix(key, "s3://") {
		probe, err := src.store(nil)
		if err != nil {
			return nil, err
		}
		if key, err = probe.KeyFromURL(o.Key); err != nil {
			return nil, err
		}
	}
	// The object is named by its whole key: its prefix is its directory.
	prefix := ""
	if i := strings.LastIndex(key, "/"); i >= 0 {
		prefix = key[:i+1]
	}
	store, err := src.store(&prefix)
	if err != nil {
		return nil, err
	}
	dest := o.Dest
	if info, err := os.Stat(dest); err == nil && info.IsDir() {
		name := strings.TrimSuffix(strings.TrimSuffix(path.Base(key), ".age"), ".zst")
		dest = filepath.Join(dest, name)
	} else if d, err := os.Stat(filepath.Dir(dest)); err != nil || !d.IsDir() {
		return nil, fmt.Errorf("dest %s: its directory %s does not exist", dest, filepath.Dir(dest))
	}
	obj, err := store.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if obj.SHA256 == "" {
		return nil, fmt.Errorf("%s has no sha256 in its metadata: it was not uploaded by this tool", obj.URL)
	}
	before, _ := fileSHA256(dest)
	res := modrun.Result{"dest": dest, "key": obj.Key, "url": obj.URL, "revision": obj.Revision, "sha256": obj.SHA256,
		"size": obj.Size, "member": obj.Member, "time": obj.Time, "changed": before != obj.SHA256}
	res["diff"] = map[string]any{"before": shaLine(before), "after": shaLine(obj.SHA256),
		"before_header": dest, "after_header": dest}
	if m.Meta.CheckMode {
		if before == obj.SHA256 {
			res["msg"] = fmt.Sprintf("%s already holds %s", dest, obj.URL)
		} else {
			res["msg"] = fmt.Sprintf("would fetch %s (revision %d) to %s", obj.URL, obj.Revision, dest)
		}
		return res, nil
	}
	var ids []age.Identity
	if o.AgeIdentityFile != "" {
		if ids, err = codec.ReadIdentities(o.AgeIdentityFile); err != nil {
			return nil, err
		}
	}
	f, err := Fetch(ctx, store, key, dest, ids)
	if err != nil {
		return nil, err
	}
	res["changed"] = f.Changed
	res["snapshot_revision"] = f.Status.Revision
	if f.Changed {
		res["msg"] = fmt.Sprintf("fetched %s (revision %d, sha256 %s) to %s", obj.URL, f.Status.Revision, obj.SHA256, dest)
	} else {
		res["msg"] = fmt.Sprintf("%s already holds %s", dest, obj.URL)
	}
	return res, nil
}

func shaLine(sum string) string {
	if sum == "" {
		return ""
	}
	return "sha256: " + sum + "\n"
}

func scrub(msg string, secrets []string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "<credential>")
		}
	}
	return msg
}
