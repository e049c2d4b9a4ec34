package scenarios

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: a scenario file. Parse must refuse what is wrong without
// panicking; what it accepts validates. `make fuzz` runs it.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		f.Fatalf("no scenario files to seed from: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"name: x\ncoordinators: [{name: a}]\nparticipants: {groups: [{prefix: p, count: -5}, {prefix: q, count: 9223372036854775807}], data: {dataset: mnist, partition: iid}}\n",
		"name: x\nfaults: [{kind: kill_after_share_keys, round: 1, fraction: .nan}]\n",
		"timeout: 9999999999h\n", "job: {model: 'mlp:1-1-1'}\n", "a: &a [*a, *a, *a]\n", "", "{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := Parse(b)
		if err != nil {
			return
		}
		if err := sc.Validate(); err != nil {
			t.Fatalf("parsed a scenario that does not validate: %v", err)
		}
		if n := sc.ParticipantCount(); n < 1 || n > 7*10_000*len(sc.Participants.Groups) {
			t.Fatalf("%d participants", n)
		}
	})
}
