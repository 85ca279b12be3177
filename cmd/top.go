package cmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kaudit/kaudit/internal/attribution"
	"github.com/kaudit/kaudit/internal/logfollow"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
)

func init() { register(newTopCommand) }

func newTopCommand() *cobra.Command {
	var (
		policyPaths []string
		interval    time.Duration
		topN        int
		once        bool
	)
	format := newFormatFlag("text", "json")
	c := &cobra.Command{
		Use:   "top --policy PATH... LOG...",
		Short: "Live audit volume per module, rule and level of a node's audit log, in a terminal",
		Long: `Top follows kube-apiserver audit log files as they are written (across rotation and truncation,
like the node agent) and shows, every --interval, the events and bytes per second and in total
that each module and rule of the policy given with --policy decided, by level, and the
security-relevant events by category (R1-R6 of docs/modules.md). It is the agent's
kaudit_audit_* metrics for people without Prometheus, on one node's log.

Events are attributed exactly as the agent and "kaudit simulate" do: kube-apiserver's own policy
evaluator decides each request with the policy given, which should be the one the apiserver runs
(on a node: /etc/kubernetes/audit/policy.yaml, or the modules it was rendered from).

Each log is read from its start, then followed; the first screen shows totals, the next ones the
rates since the screen before. --once reads every log to its end, prints one snapshot and exits.
Compressed rotated logs are not followed: give them to "kaudit simulate".`,
		Example: `  # On a control-plane node: what the policy in force writes, every 2 seconds
  kaudit top --policy /etc/kubernetes/audit/policy.yaml /var/log/kubernetes/audit/audit.log

  # One snapshot of a copied log, against the modules it was rendered from, as JSON
  kaudit top --policy config/modules/baseline --once --format json audit.log`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := format.get()
			if err != nil {
				return err
			}
			if len(policyPaths) == 0 {
				return errors.New("--policy is required")
			}
			if interval <= 0 || topN < 0 {
				return fmt.Errorf("--interval %s, --top %d: give a positive interval and 0 or more rows", interval, topN)
			}
			in, err := readPolicy(cmd, policyPaths)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rendered, err := renderedPolicy(policyPaths, in.Merged)
			if err != nil {
				return err
			}
			t, err := openTop(args, rendered)
			if err != nil {
				return err
			}
			defer t.close()
			show := topPrinter{w: cmd.OutOrStdout(), json: out == "json", rows: topN, policy: in.Name, clear: !once && isTerminal(cmd.OutOrStdout())}
			if once {
				if err := t.readToEnd(); err != nil {
					return err
				}
				return show.print(t.snapshot(t.attr.Snapshot(), nil, 0))
			}
			return t.run(ctx, interval, show.print)
		},
	}
	f := c.Flags()
	f.StringSliceVarP(&policyPaths, "policy", "p", nil, "the policy the apiserver runs: module files or directories, an AuditPolicy manifest, or an audit.k8s.io/v1 Policy (repeatable)")
	f.DurationVar(&interval, "interval", 2*time.Second, "how often the screen is redrawn, and the time rates are measured over")
	f.IntVar(&topN, "top", 10, "how many modules and rules to show, the largest first; 0 shows them all")
	f.BoolVar(&once, "once", false, "read the logs to their end, print one snapshot of the totals and exit")
	format.addTo(c)
	_ = c.RegisterFlagCompletionFunc("interval", fixedCompletion("1s", "2s", "5s", "10s"))
	_ = c.RegisterFlagCompletionFunc("top", fixedCompletion("10", "20", "0"))
	return c
}

// renderedPolicy is the policy file to attribute events with: a policy file that kaudit
// rendered (the node's) as it is, since its comments name the modules as the agent's metrics do
// (read as a plain policy, it would be split into modules named after the file); otherwise the
// policy the inputs merge into, rendered.
func renderedPolicy(paths []string, merged *policy.Merged) ([]byte, error) {
	if len(paths) == 1 {
		if st, err := os.Stat(paths[0]); err == nil && st.Mode().IsRegular() {
			file, err := os.ReadFile(paths[0])
			if err != nil {
				return nil, fmt.Errorf("--policy: %w", err)
			}
			if policy.IsRendered(file) {
				return file, nil
			}
		}
	}
	return merged.Render(), nil
}

// topLog is one followed log file.
type topLog struct {
	path     string
	follower *logfollow.Follower
	// checkpointDir holds the follower's checkpoint, which only makes its counters current:
	// top never resumes.
	checkpointDir string
	err           error
}

// top follows the logs and counts their events, all with one policy.
type top struct {
	logs []*topLog
	attr *attribution.Attributor
}

// openTop prepares to follow paths from their start, attributing their events to the rules of
// the policy file rendered.
func openTop(paths []string, rendered []byte) (*top, error) {
	t := &top{attr: attribution.New(attribution.Options{Categories: relevance.Categories})}
	// One revision in force since ever: the label "revision" of the counts means nothing here.
	if err := t.attr.SetRevisions([]attribution.Revision{{Number: 1, Policy: rendered}}); err != nil {
		return nil, err
	}
	for _, p := range paths {
		if err := checkFollowable(p); err != nil {
			t.close()
			return nil, err
		}
		dir, err := os.MkdirTemp("", "kaudit-top-")
		if err != nil {
			t.close()
			return nil, err
		}
		l := &topLog{path: p, checkpointDir: dir}
		t.logs = append(t.logs, l)
		if l.follower, err = logfollow.Open(logfollow.Options{Path: p, CheckpointDir: dir}); err != nil {
			t.close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return t, nil
}

// checkFollowable refuses what top cannot follow: a missing file (a typo would wait for ever),
// a directory, a compressed file.
func checkFollowable(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case st.IsDir():
		return fmt.Errorf("%s is a directory: give the log file (its rotated files are followed when it rotates)", path)
	case strings.HasSuffix(path, ".gz"):
		return fmt.Errorf("%s is compressed, and no longer written: kaudit simulate reads it", path)
	}
	return nil
}

func (t *top) close() {
	for _, l := range t.logs {
		if l.follower != nil {
			l.follower.Close()
		}
		os.RemoveAll(l.checkpointDir)
	}
}

// poll reads and counts what each log has now, until none has more; an error reading a log is
// kept for the screen and the next poll tries again.
func (t *top) poll() {
	for more := true; more; {
		more = false
		for _, l := range t.logs {
			b, err := l.follower.Poll()
			l.err = err
			if len(b.Lines) > 0 {
				t.attr.Observe(b.Lines)
				more = true
			}
		}
	}
	for _, l := range t.logs {
		if err := l.follower.Commit(nil); err != nil && l.err == nil {
			l.err = err
		}
	}
}

// readToEnd reads every log to its end, for --once: there a read error fails the command.
func (t *top) readToEnd() error {
	t.poll()
	var errs []error
	for _, l := range t.logs {
		if l.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.path, l.err))
		}
	}
	return errors.Join(errs...)
}

// run reads the logs and shows a snapshot every interval until ctx is done.
func (t *top) run(ctx context.Context, interval time.Duration, show func(topSnapshot) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var prev *attribution.Counts
	last := time.Now()
	for {
		t.poll()
		counts, now := t.attr.Snapshot(), time.Now()
		if err := show(t.snapshot(counts, prev, now.Sub(last))); err != nil {
			return err
		}
		prev, last = &counts, now
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// topSnapshot is what top shows: totals since the start, and rates since the snapshot before.
// Its JSON form is the output of --format json.
type topSnapshot struct {
	// Interval is the time the rates are measured over, in seconds; 0 for the first snapshot
	// and --once, which have totals only.
	Interval float64    `json:"intervalSeconds"`
	Total    topCount   `json:"total"`
	Modules  []topCount `json:"modules"`
	Rules    []topCount `json:"rules"`
	Levels   []topCount `json:"levels"`
	Security []topCount `json:"security"`
	// Unattributed are the lines no rule was credited with, and the events whose level says that
	// the log was written with another policy.
	Unattributed topUnattributed `json:"unattributed"`
	// Latest is the time of the latest event read.
	Latest time.Time `json:"latest,omitzero"`
	Files  []topFile `json:"files"`
}

// topCount is the events and bytes of one row: a module, a rule, a level or a category.
type topCount struct {
	Module   string `json:"module,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Level    string `json:"level,omitempty"`
	Category string `json:"category,omitempty"`
	Events   int64  `json:"events"`
	// Bytes is the size of the events in the log, newlines included; categories have none.
	Bytes           int64   `json:"bytes,omitempty"`
	EventsPerSecond float64 `json:"eventsPerSecond,omitempty"`
	BytesPerSecond  float64 `json:"bytesPerSecond,omitempty"`
}

type topUnattributed struct {
	// Malformed lines are not JSON; NotEvents are JSON of another kind or apiVersion.
	Malformed int64 `json:"malformed"`
	NotEvents int64 `json:"notEvents"`
	// NoTime events have no time to place them by.
	NoTime int64 `json:"noTime"`
	// NoRule events matched no rule of the policy, which therefore would not have written them:
	// the log was written with another policy.
	NoRule int64 `json:"noRule"`
	// LevelMismatches were written at another level than their rule decides: the log was
	// written with another policy.
	LevelMismatches int64 `json:"levelMismatches"`
}

type topFile struct {
	Path        string `json:"path"`
	Offset      int64  `json:"offset"`
	Unread      int64  `json:"unreadBytes"`
	Rotations   int64  `json:"rotations"`
	Truncations int64  `json:"truncations"`
	Gaps        int64  `json:"gaps"`
	Error       string `json:"error,omitempty"`
}

// snapshot is what the screen shows of the counts now, with rates against prev, counted elapsed
// ago; prev nil means no rates.
func (t *top) snapshot(now attribution.Counts, prev *attribution.Counts, elapsed time.Duration) topSnapshot {
	s := topSnapshot{Latest: now.Latest}
	s.Unattributed = topUnattributed{Malformed: now.Malformed, NotEvents: now.NotEvents, NoTime: now.NoTime, NoRule: now.NoRule}
	for _, m := range now.LevelMismatches {
		s.Unattributed.LevelMismatches += m.Events
	}
	if prev != nil && elapsed > 0 {
		s.Interval = elapsed.Seconds()
	}
	cur, before := groupCounts(&now), groupCounts(prev)
	rows := func(kind int) []topCount {
		out := make([]topCount, 0, len(cur[kind]))
		for key, c := range cur[kind] {
			out = append(out, withRates(c, before[kind][key], s.Interval))
		}
		slices.SortFunc(out, func(x, y topCount) int {
			return cmp.Or(cmp.Compare(y.BytesPerSecond, x.BytesPerSecond), cmp.Compare(y.EventsPerSecond, x.EventsPerSecond),
				cmp.Compare(y.Bytes, x.Bytes), cmp.Compare(y.Events, x.Events),
				cmp.Compare(x.Module, y.Module), cmp.Compare(x.Rule, y.Rule), cmp.Compare(x.Level, y.Level), cmp.Compare(x.Category, y.Category))
		})
		return out
	}
	s.Total = withRates(cur[byTotal][topCount{}], before[byTotal][topCount{}], s.Interval)
	s.Modules, s.Rules, s.Levels, s.Security = rows(byModule), rows(byRule), rows(byLevel), rows(byCategory)
	for _, l := range t.logs {
		st := l.follower.Stats()
		f := topFile{Path: l.path, Offset: st.Offset, Unread: st.Unread, Rotations: st.Rotations, Truncations: st.Truncations, Gaps: st.Gaps}
		if l.err != nil {
			f.Error = l.err.Error()
		}
		s.Files = append(s.Files, f)
	}
	return s
}

// withRates is c with the rates since before, seconds ago; none when seconds is 0.
func withRates(c, before topCount, seconds float64) topCount {
	if seconds > 0 {
		c.EventsPerSecond = float64(c.Events-before.Events) / seconds
		c.BytesPerSecond = float64(c.Bytes-before.Bytes) / seconds
	}
	return c
}

// The groupings of groupCounts.
const (
	byTotal = iota
	byModule
	byRule
	byLevel
	byCategory
	numGroupings
)

// groupCounts adds the counts of every stage (and revision) up per module, rule, level and
// category, and in total; each map is keyed by its rows' labels.
func groupCounts(c *attribution.Counts) [numGroupings]map[topCount]topCount {
	var g [numGroupings]map[topCount]topCount
	for i := range g {
		g[i] = map[topCount]topCount{}
	}
	if c == nil {
		return g
	}
	add := func(kind int, key topCount, events, bytes int64) {
		v, ok := g[kind][key]
		if !ok {
			v = key
		}
		v.Events += events
		v.Bytes += bytes
		g[kind][key] = v
	}
	for _, r := range c.Rules {
		add(byTotal, topCount{}, r.Events, r.Bytes)
		add(byModule, topCount{Module: r.Module}, r.Events, r.Bytes)
		add(byRule, topCount{Module: r.Module, Rule: r.Rule, Level: r.Level}, r.Events, r.Bytes)
		add(byLevel, topCount{Level: r.Level}, r.Events, r.Bytes)
	}
	for _, s := range c.Security {
		add(byCategory, topCount{Category: s.Category}, s.Events, 0)
	}
	return g
}

// topPrinter writes snapshots as text tables or JSON.
type topPrinter struct {
	w      io.Writer
	json   bool
	rows   int
	policy string
	// clear redraws the screen of a terminal in place; otherwise snapshots follow each other.
	clear bool
}

func (p topPrinter) print(s topSnapshot) error {
	moreModules, moreRules := max(len(s.Modules)-p.rows, 0), max(len(s.Rules)-p.rows, 0)
	if p.rows > 0 {
		s.Modules, s.Rules = s.Modules[:len(s.Modules)-moreModules], s.Rules[:len(s.Rules)-moreRules]
	} else {
		moreModules, moreRules = 0, 0
	}
	if p.json {
		return writeJSON(p.w, s)
	}
	var b strings.Builder
	if p.clear {
		b.WriteString("\x1b[H\x1b[2J")
	}
	fmt.Fprintf(&b, "kaudit top: %s, policy %s", count(len(s.Files), "log"), p.policy)
	if !s.Latest.IsZero() {
		fmt.Fprintf(&b, ", latest event %s", s.Latest.UTC().Format(time.RFC3339))
	}
	if s.Interval == 0 {
		b.WriteString("; totals only (rates from the next screen on)")
	}
	b.WriteString("\n\n")
	perSecond := func(v float64, unit func(float64) string) string {
		if s.Interval == 0 {
			return "-"
		}
		return unit(v) + "/s"
	}
	events := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	bytes := func(v float64) string { return byteSize(int64(v)) }
	// Each table is aligned on its own, and ends with an empty line.
	table := func(header string, write func(tw io.Writer)) error {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		write(tw)
		fmt.Fprintln(tw)
		return tw.Flush()
	}
	volume := func(title string, rows []topCount, more int, label func(topCount) string, total bool) error {
		return table(title+"\tEVENTS/S\tBYTES/S\tEVENTS\tBYTES", func(tw io.Writer) {
			line := func(name string, c topCount) {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", name, perSecond(c.EventsPerSecond, events), perSecond(c.BytesPerSecond, bytes), c.Events, byteSize(c.Bytes))
			}
			for _, c := range rows {
				line(label(c), c)
			}
			if more > 0 {
				fmt.Fprintf(tw, "(%d more)\t\t\t\t\n", more)
			}
			if total {
				line("total", s.Total)
			}
		})
	}
	if err := errors.Join(
		volume("MODULE", s.Modules, moreModules, func(c topCount) string { return c.Module }, true),
		volume("RULE (MODULE/INDEX)", s.Rules, moreRules, func(c topCount) string { return c.Module + "/" + c.Rule + " (" + c.Level + ")" }, false),
		volume("LEVEL", s.Levels, 0, func(c topCount) string { return c.Level }, false),
		table("SECURITY-RELEVANT\tEVENTS/S\tEVENTS", func(tw io.Writer) {
			for _, c := range s.Security {
				fmt.Fprintf(tw, "%s %s\t%s\t%d\n", c.Category, relevance.Rule(c.Category).Title(), perSecond(c.EventsPerSecond, events), c.Events)
			}
		}),
	); err != nil {
		return err
	}
	u := s.Unattributed
	if u.Malformed+u.NotEvents+u.NoTime+u.NoRule > 0 {
		fmt.Fprintf(&b, "Not counted above: %d malformed lines, %d of another kind or version, %d events without a time, %d matched by no rule of the policy.\n", u.Malformed, u.NotEvents, u.NoTime, u.NoRule)
	}
	if u.NoRule+u.LevelMismatches > 0 {
		fmt.Fprintf(&b, "%d events matched no rule and %d were written at another level than their rule decides: the log was not written with this policy.\n", u.NoRule, u.LevelMismatches)
	}
	b.WriteByte('\n')
	for _, f := range s.Files {
		fmt.Fprintf(&b, "%s: at %s, %s unread, %d rotations, %d truncations, %d gaps", f.Path, byteSize(f.Offset), byteSize(f.Unread), f.Rotations, f.Truncations, f.Gaps)
		if f.Error != "" {
			fmt.Fprintf(&b, ", error: %s", f.Error)
		}
		b.WriteByte('\n')
	}
	if !p.clear {
		b.WriteByte('\n')
	}
	_, err := io.WriteString(p.w, b.String())
	return err
}

// byteSize writes a number of bytes with a decimal unit, as simulate's report does.
func byteSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
