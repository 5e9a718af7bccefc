package config

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// examplePath is the example config file shipped for operators.
const examplePath = "../../deploy/pushpull.example.json"

// TestExampleConfigListsEverySetting keeps deploy/pushpull.example.json
// true: it names each setting exactly once, nothing else, and every value is
// the default, so that an operator can read it as the full list of knobs.
func TestExampleConfigListsEverySetting(t *testing.T) {
	cfg, err := Load([]string{"--" + ConfigFlag, examplePath}, nil, nil)
	if err != nil {
		t.Fatalf("loading %s: %v", examplePath, err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("%s does not give Default():\n got %+v\nwant %+v", examplePath, cfg, Default())
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: Validate() = %v", examplePath, err)
	}

	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	// Keys in file order, so that a duplicate (which json.Unmarshal would
	// silently merge) is caught too.
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		key := tok.(string)
		if seen[key] {
			t.Errorf("%s lists %q twice", examplePath, key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range settings() {
		if !seen[s.name] {
			t.Errorf("%s misses the setting %q", examplePath, s.name)
		}
		delete(seen, s.name)
	}
	for key := range seen {
		t.Errorf("%s lists %q, which is no setting", examplePath, key)
	}
}
