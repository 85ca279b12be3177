package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRedactOverwritesSecretsInPlace(t *testing.T) {
	token := "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpjaSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
	lastApplied := `{"apiVersion":"v1","data":{"password":"aHVudGVyMg=="},"kind":"Secret","metadata":{"name":"db","namespace":"prod"}}` + "\n"
	applied, _ := json.Marshal(lastApplied)
	tests := []struct {
		name, line string
		gone       []string // must not remain
		kept       []string // must remain
	}{
		{
			name: "secret create with last-applied annotation",
			line: `{"kind":"Event","objectRef":{"resource":"secrets","namespace":"prod","name":"db"},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":` + string(applied) + `}},"data":{"password":"aHVudGVyMg==","user":"YWRtaW4="}},"responseObject":{"kind":"Secret","data":{"password":"aHVudGVyMg==","user":"YWRtaW4="}},"stageTimestamp":"2026-11-25T10:00:00Z"}`,
			gone: []string{"aHVudGVyMg==", "YWRtaW4=", `\"password\"`},
			kept: []string{`"name":"db"`, `"user":`},
		},
		{
			name: "patch of a secret names no kind",
			line: `{"kind":"Event","objectRef":{"resource":"secrets","name":"db"},"requestObject":{"stringData":{"password":"hunter2<&>"}},"stageTimestamp":"2026-11-25T10:00:00Z"}`,
			gone: []string{"hunter2"},
		},
		{
			name: "secret list",
			line: `{"kind":"Event","objectRef":{"resource":"secrets"},"responseObject":{"kind":"SecretList","items":[{"metadata":{"name":"a"},"data":{"k":"djE="}},{"metadata":{"name":"b"},"data":{"k":"djE="}}]},"stageTimestamp":"2026-11-25T10:00:00Z"}`,
			gone: []string{"djE="},
		},
		{
			name: "token request response",
			line: `{"kind":"Event","objectRef":{"resource":"serviceaccounts","subresource":"token"},"responseObject":{"kind":"TokenRequest","status":{"token":"` + token + `"}},"stageTimestamp":"2026-11-25T10:00:00Z"}`,
			gone: []string{"eyJ", "c2lnbmF0dXJl"},
		},
		{
			// kubeadm's bootstrap token: two values of one length, one of them twice.
			name: "repeated values among others of the same length",
			line: `{"kind":"Event","objectRef":{"resource":"secrets"},"requestObject":{"kind":"Secret","data":{"a":"dHJ1ZQ==","b":"YWJjZGVm","c":"dHJ1ZQ=="}},"stageTimestamp":"2026-11-25T10:00:00Z"}`,
			gone: []string{"dHJ1ZQ==", "YWJjZGVm"},
		},
		{
			name: "configmap data is not secret",
			line: `{"kind":"Event","objectRef":{"resource":"configmaps"},"requestObject":{"kind":"ConfigMap","data":{"k":"v1"}},"stageTimestamp":"2026-11-25T10:00:00Z"}`,
			kept: []string{`"k":"v1"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Redact([]byte(tc.line))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.line) {
				t.Errorf("length %d, want %d", len(got), len(tc.line))
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
			for _, s := range tc.gone {
				if strings.Contains(string(got), s) {
					t.Errorf("%q remains: %s", s, got)
				}
			}
			for _, s := range tc.kept {
				if !strings.Contains(string(got), s) {
					t.Errorf("%q was removed: %s", s, got)
				}
			}
			if len(tc.gone) > 0 && !strings.Contains(string(got), Marker[:4]) {
				t.Errorf("no marker in %s", got)
			}
		})
	}
}

func TestRedactingARedactedLineChangesNothing(t *testing.T) {
	line := `{"kind":"Event","objectRef":{"resource":"secrets"},"requestObject":{"kind":"Secret","data":{"a":"aHVudGVyMg==","b":"aHVudGVyMg=="}},"stageTimestamp":"2026-11-25T10:00:00Z"}`
	once, err := Redact([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	twice, err := Redact(once)
	if err != nil {
		t.Fatal(err)
	}
	if string(twice) != string(once) {
		t.Errorf("second redaction changed the line:\n%s\n%s", once, twice)
	}
}
