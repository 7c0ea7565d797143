package cassandra

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ferry-dev/ferry/config"
)

// savepointer writes savepoint files: the run's config with the finished
// token ranges filled into skipTokenRanges, every secret replaced by a
// ${VARIABLE} reference, written to a temp file and renamed into place so a
// reader never sees half a file. Starting ferry with one resumes the run.
type savepointer struct {
	cfg    config.Source
	tables []*table
	prog   *progress
	log    *slog.Logger
	mu     sync.Mutex
	last   string
}

func newSavepointer(cfg config.Source, tables []*table, prog *progress, log *slog.Logger) *savepointer {
	return &savepointer{cfg: cfg, tables: tables, prog: prog, log: log}
}

func (s *savepointer) enabled() bool {
	return s.cfg.CQLRun != nil && s.cfg.CQLRun.Config != nil && s.cfg.CQLRun.Config.Savepoints.Path != ""
}

// start writes a savepoint every interval until stop, which writes the last
// one (at the end of the snapshot, or after SIGINT/SIGTERM ended ctx).
func (s *savepointer) start(ctx context.Context) (stop func()) {
	if !s.enabled() {
		return func() {}
	}
	every := time.Duration(s.cfg.CQLRun.Config.Savepoints.IntervalSeconds) * time.Second
	if every <= 0 {
		every = 300 * time.Second
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				s.writeLogged()
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
		s.writeLogged()
	}
}

func (s *savepointer) writeLogged() {
	path, err := s.write(time.Now())
	if err != nil {
		s.log.Error("writing savepoint", "err", err)
		return
	}
	s.log.Info("savepoint written", "file", path)
}

// write renders and stores one savepoint file.
func (s *savepointer) write(now time.Time) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := renderSavepoint(s.cfg, s.prog.finished(s.tables))
	if err != nil {
		return "", err
	}
	dir := s.cfg.CQLRun.Config.Savepoints.Path
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("savepoints.path %s: %w", dir, err)
	}
	path := filepath.Join(dir, "savepoint_"+strconv.FormatInt(now.Unix(), 10)+".yaml")
	tmp, err := os.CreateTemp(dir, ".savepoint-*.tmp")
	if err != nil {
		return "", fmt.Errorf("savepoints.path %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	s.last = path
	return path, nil
}

const savepointHeader = `# ferry savepoint: the config of the run with the token ranges it finished
# in skipTokenRanges. Start ferry with this file as --config to resume.
# Secrets are not stored: each is a ${VARIABLE} reference to set in the
# environment before resuming.
`

// renderSavepoint writes the run's config with skip as the source's
// skipTokenRanges, in the shape the config had (a scylla-migrator document
// stays one).
func renderSavepoint(src config.Source, skip []tokenRange) ([]byte, error) {
	run := src.CQLRun
	var root yaml.Node
	if run.Migrator != nil {
		// A deep copy, so that redacting does not touch the run's own.
		raw, err := yaml.Marshal(run.Migrator)
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(raw, &root); err != nil {
			return nil, err
		}
		doc := root.Content[0]
		setKey(doc, "skipTokenRanges", migratorRanges(skip))
	} else {
		c := *run.Config
		c.Sources = append([]config.Source(nil), c.Sources...)
		c.Targets = append([]config.Target(nil), c.Targets...)
		for i := range c.Sources {
			s := &c.Sources[i]
			if s.Name == src.Name {
				s.SkipTokenRanges = skip
			}
			s.DSN = redactDSN(s.Type, s.DSN, "FERRY_"+envName(s.Name)+"_PASSWORD")
		}
		for i := range c.Targets {
			t := &c.Targets[i]
			t.DSN = redactDSN(t.Type, t.DSN, "FERRY_"+envName(t.Name)+"_PASSWORD")
		}
		if err := root.Encode(&c); err != nil {
			return nil, err
		}
	}
	redactNode(&root, "FERRY")
	out, err := yaml.Marshal(&root)
	if err != nil {
		return nil, err
	}
	return append([]byte(savepointHeader), out...), nil
}

// redactDSN replaces a CQL DSN's password by a ${VARIABLE} reference; other
// DSNs are masked.
func redactDSN(typ, dsn, env string) string {
	if !config.IsCQL(typ) {
		return config.Redact(dsn)
	}
	d, err := config.ParseCQLDSN(dsn)
	if err != nil {
		return config.Redact(dsn)
	}
	pw := d.Password
	if pw != "" && !strings.HasPrefix(pw, "${") {
		pw = "${" + env + "}"
	}
	return config.CQLDSNString(d.Hosts, d.User, pw)
}

var secretKey = regexp.MustCompile(`(?i)password|secret|token$|credentials?key`)

// redactNode replaces every scalar under a secret-looking key by a
// ${VARIABLE} reference named after its path.
func redactNode(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			redactNode(c, path)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := path + "_" + envName(k.Value)
			if v.Kind == yaml.ScalarNode && secretKey.MatchString(k.Value) && v.Value != "" && !strings.HasPrefix(v.Value, "${") {
				v.Value, v.Tag, v.Style = "${"+p+"}", "!!str", 0
				continue
			}
			redactNode(v, p)
		}
	}
}

func envName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// migratorRanges writes ranges as scylla-migrator does: pairs of
// {type: long, value: N}.
func migratorRanges(rs []tokenRange) *yaml.Node {
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	tok := func(v int64) *yaml.Node {
		return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: "type"}, {Kind: yaml.ScalarNode, Value: "long"},
			{Kind: yaml.ScalarNode, Value: "value"}, {Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v, 10)},
		}}
	}
	for _, r := range rs {
		seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{tok(r.Start), tok(r.End)}})
	}
	return seq
}

func setKey(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
}
