// Command redactauditlog turns an audit log recorded on a throwaway cluster into a sample that
// can be committed: it keeps the events of a time window and overwrites secret material in place
// with the marker "KAUDITREDACTED", byte for byte, so every line keeps its size and stays valid
// JSON. Redacted: the values under data and stringData of Secrets (and of patches to them),
// their last-applied-configuration annotation, and every JSON Web Token (service account
// tokens in TokenRequests, TokenReviews and legacy token Secrets). A byte measurement of the
// sample is therefore the measurement of the recorded log, and a test can look for the marker
// in what a policy keeps to prove that no secret reaches the log.
//
//	go run ./hack/redactauditlog -o sample.jsonl.gz audit-2026-11-25T22-10-00.000.log audit.log
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Marker replaces secret bytes.
const Marker = "KAUDITREDACTED"

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// jwt matches a JSON Web Token: three base64url parts, the first a JSON object ("eyJ").
var jwt = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

func main() {
	out := flag.String("o", "-", "output file; gzipped when it ends in .gz")
	since := flag.String("since", "", "keep events whose stageTimestamp is at or after this RFC 3339 time")
	until := flag.String("until", "", "keep events whose stageTimestamp is before this RFC 3339 time")
	flag.Parse()
	if err := run(flag.Args(), *out, *since, *until); err != nil {
		fmt.Fprintln(os.Stderr, "redactauditlog:", err)
		os.Exit(1)
	}
}

func run(inputs []string, out, since, until string) error {
	if len(inputs) == 0 {
		return errors.New("no input files (give the rotated logs oldest first, then audit.log)")
	}
	window, err := parseWindow(since, until)
	if err != nil {
		return err
	}
	var w io.Writer = os.Stdout
	var closers []io.Closer // in closing order: the gzip footer before the file
	if out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		w, closers = f, []io.Closer{f}
		if strings.HasSuffix(out, ".gz") {
			gz, err := gzip.NewWriterLevel(f, gzip.BestCompression)
			if err != nil {
				f.Close()
				return err
			}
			w, closers = gz, []io.Closer{gz, f}
		}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var kept, total int
	for _, name := range inputs {
		k, n, rerr := redactFile(name, bw, window)
		if err = rerr; err != nil {
			break
		}
		kept, total = kept+k, total+n
	}
	if err == nil {
		fmt.Fprintf(os.Stderr, "kept %d of %d events\n", kept, total)
		err = bw.Flush()
	}
	// A failed close loses the end of the sample: it is an error like any failed write.
	for _, c := range closers {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

type timeWindow struct{ from, to time.Time }

func parseWindow(since, until string) (timeWindow, error) {
	var w timeWindow
	var err error
	if since != "" {
		if w.from, err = time.Parse(time.RFC3339, since); err != nil {
			return w, fmt.Errorf("-since: %w", err)
		}
	}
	if until != "" {
		if w.to, err = time.Parse(time.RFC3339, until); err != nil {
			return w, fmt.Errorf("-until: %w", err)
		}
	}
	return w, nil
}

func (w timeWindow) contains(t time.Time) bool {
	return (w.from.IsZero() || !t.Before(w.from)) && (w.to.IsZero() || t.Before(w.to))
}

func redactFile(name string, w io.Writer, window timeWindow) (kept, total int, err error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		total++
		var head struct {
			StageTimestamp time.Time `json:"stageTimestamp"`
		}
		if err := json.Unmarshal(sc.Bytes(), &head); err != nil {
			return kept, total, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if !window.contains(head.StageTimestamp) {
			continue
		}
		redacted, err := Redact(sc.Bytes())
		if err != nil {
			return kept, total, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if _, err := w.Write(append(redacted, '\n')); err != nil {
			return kept, total, err
		}
		kept++
	}
	return kept, total, sc.Err()
}

// Redact returns the event line with secret material overwritten, the same length as line.
func Redact(line []byte) ([]byte, error) {
	out := jwt.ReplaceAllFunc(bytes.Clone(line), func(m []byte) []byte { return fill(len(m)) })
	var ev struct {
		ObjectRef *struct {
			Resource string `json:"resource"`
		} `json:"objectRef"`
		RequestObject  any `json:"requestObject"`
		ResponseObject any `json:"responseObject"`
	}
	if err := json.Unmarshal(out, &ev); err != nil {
		return nil, err
	}
	var secrets []string
	isSecret := ev.ObjectRef != nil && ev.ObjectRef.Resource == "secrets"
	collect(ev.RequestObject, isSecret, &secrets)
	collect(ev.ResponseObject, isSecret, &secrets)
	// Longest first: an annotation holds the data values, and must be found before they change.
	// Equal values must end up next to each other for Compact: the first overwrite replaces
	// every occurrence, so a second search for the same value would find nothing.
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), cmp.Compare(a, b)) })
	for _, s := range slices.Compact(secrets) {
		var err error
		if out, err = overwrite(out, s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// collect gathers the secret strings of a body: under data and stringData of any object of kind
// Secret, or of any object at all in a request on secrets (patches and lists name no kind),
// and the last-applied annotation of such objects.
func collect(v any, secret bool, into *[]string) {
	switch v := v.(type) {
	case map[string]any:
		if v["kind"] == "Secret" {
			secret = true
		}
		for k, child := range v {
			switch {
			case secret && (k == "data" || k == "stringData"):
				if m, ok := child.(map[string]any); ok {
					for _, value := range m {
						if s, ok := value.(string); ok && s != "" {
							*into = append(*into, s)
						}
					}
				}
			case secret && k == "metadata":
				if md, ok := child.(map[string]any); ok {
					if ann, ok := md["annotations"].(map[string]any); ok {
						if s, ok := ann[lastApplied].(string); ok {
							*into = append(*into, s)
						}
					}
				}
				collect(child, secret, into)
			default:
				collect(child, secret, into)
			}
		}
	case []any:
		for _, child := range v {
			collect(child, secret, into)
		}
	}
}

// overwrite replaces every occurrence of s, as JSON writes it, with the marker. The apiserver's
// encoder escapes HTML characters as Go's does; without escaping is tried too.
func overwrite(line []byte, s string) ([]byte, error) {
	found := false
	for _, escapeHTML := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(escapeHTML)
		if err := enc.Encode(s); err != nil {
			return nil, err
		}
		encoded := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
		inner := encoded[1 : len(encoded)-1] // the string's bytes between its quotes
		if len(inner) == 0 {
			continue
		}
		// Search on after each replacement: a value that already reads as the marker stays the same.
		for at := 0; ; {
			i := bytes.Index(line[at:], encoded)
			if i < 0 {
				break
			}
			copy(line[at+i+1:], fill(len(inner)))
			at += i + len(encoded)
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("cannot find a secret value of %d bytes in the line as JSON encodes it; refusing to write it", len(s))
	}
	return line, nil
}

// fill is n bytes of the repeated marker.
func fill(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = Marker[i%len(Marker)]
	}
	return b
}
