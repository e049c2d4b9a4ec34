package coordinator_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/accord-fl/accord/coordinator"
	"github.com/accord-fl/accord/coordinator/coordtest"
	"github.com/accord-fl/accord/participant"
	"github.com/accord-fl/accord/pki"
	pb "github.com/accord-fl/accord/protocol/accordpb"
)

// chromiumPath finds a Chromium or Chrome binary ("" if none).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startRegionalFleet runs n participant daemons spread over regions until
// the test ends.
func startRegionalFleet(t *testing.T, tc *coordtest.Cluster, n int, regions []string) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for i := range n {
		name := fmt.Sprintf("site-%02d", i+1)
		cert, err := tc.CA.Issue(pki.Identity{Role: pki.RoleParticipant, Name: name, Organization: fmt.Sprintf("hospital-%d", i%4+1)})
		if err != nil {
			t.Fatal(err)
		}
		p, err := participant.New(participant.Config{
			Coordinators: tc.Addrs(), Cert: cert, CA: tc.CA.Pool(), Region: regions[i%len(regions)], Dataset: "blobs",
			Train: blobs(120, uint64(i)), Validation: blobs(40, uint64(1000+i)),
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			// Rounds of tens of milliseconds: a long job is still running
			// while the browser looks at it.
			EpochDelay: 25 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { p.Run(ctx) })
	}
}

// spki is a certificate's public key hash as Chromium's
// --ignore-certificate-errors-spki-list takes it.
func spki(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// withHeaders makes the tab send headers with every request, the page's
// own fetches included.
func withHeaders(h network.Headers) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h})
		return chromedp.Void{}, err
	}
}

// TestStatusPageOfACluster: every coordinator of a 3-node cluster serves
// its status page; a follower says it is one, names the leader and leaves
// connected counts to it. Then, in headless Chromium (skipped when no
// Chromium is installed; .ci/run installs Debian's): the leader's overview
// lists the three coordinators, the job and the participants' regions, and
// the job's page lists its rounds and draws its accuracy chart.
// Screenshots go to the test's temporary folder and to
// $TMPDIR/status-page.png and status-page-job.png.
func TestStatusPageOfACluster(t *testing.T) {
	tc := coordtest.NewCluster(t, 3, withStatusPage(writeToken(t, testStatusToken)))
	leader := tc.Leader(10 * time.Second)
	regions := []string{"eu-west", "us-east", "ap-south"}
	startRegionalFleet(t, tc, 6, regions)
	// A small learning rate, so that the chart has a curve to draw.
	spec := blobsJob(8)
	spec.Name, spec.TargetAccuracy, spec.LearningRate = "blobs-logreg", 0.97, 0.002
	jobID := submit(t, tc.Admin(0, "ops"), spec)
	job := tc.WaitJob(jobID, 90*time.Second)
	if job.Status != pb.JobStatus_JOB_STATUS_SUCCEEDED || job.CommittedRounds == 0 {
		t.Fatalf("job ended %v after %d rounds (%s); want SUCCEEDED", job.Status, job.CommittedRounds, job.Reason)
	}
	tc.WaitConverged(10 * time.Second)
	// A second job still runs while the pages are looked at.
	long := blobsJob(500)
	long.Name, long.LearningRate = "blobs-long", 0.0005
	longID := submit(t, tc.Admin(0, "ops"), long)
	leader = tc.Leader(10 * time.Second)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if j, err := leader.FSM().Job(longID); err == nil && j.CommittedRounds >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second job committed no 3 rounds within 30 s")
		}
	}

	// Every follower answers for itself.
	cl := statusClient(tc, nil)
	for _, c := range tc.Nodes {
		if c == leader {
			continue
		}
		code, _, body, err := statusGet(t, cl, "GET", "https://"+c.StatusAddr()+"/api/status", "Bearer "+testStatusToken)
		if err != nil || code != 200 {
			t.Fatalf("%s's /api/status: %d, %v", c.Name(), code, err)
		}
		var st coordinator.StatusView
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		switch {
		case st.AnsweredBy != c.Name() || st.Raft.State != "Follower" || st.Raft.Leader == "" || st.Raft.Leader == c.Name():
			t.Errorf("%s's status: answered by %s, %s, leader %q; want itself, a follower that knows the leader", c.Name(), st.AnsweredBy, st.Raft.State, st.Raft.Leader)
		case len(st.Members) != 3 || len(st.Jobs) != 2 || st.Jobs[1].ID != jobID || st.Jobs[1].RoundsCommitted != job.CommittedRounds:
			t.Errorf("%s's status: %d members, jobs %+v; want 3, and the job %s with %d rounds second", c.Name(), len(st.Members), st.Jobs, jobID, job.CommittedRounds)
		case st.Participants.Registered != 6 || st.Participants.Connected != nil || st.Participants.ConnectedKnownBy != st.Raft.Leader:
			t.Errorf("%s's participants: %+v; want 6 registered, connections left to the leader %s", c.Name(), st.Participants, st.Raft.Leader)
		}
	}

	browser := chromiumPath()
	if browser == "" {
		t.Skip("no Chromium found (chromium, chromium-browser, google-chrome): the status page's browser test is skipped; `apt-get install chromium` (as .ci/run does) runs it")
	}
	var certs []string
	for i := range tc.Nodes {
		certs = append(certs, spki(t, tc.Cfg(i).Cert))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // tests run as root in CI; the page is our own
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")),
		chromedp.WindowSize(1440, 1000),
		// The coordinators' certificates chain to the federation CA, which
		// Chromium does not know: trust exactly these keys.
		chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(certs, ",")),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, withHeaders(network.Headers{"Authorization": "Bearer " + testStatusToken})); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}
	base := "https://" + leader.StatusAddr()
	dir := t.TempDir()
	shot := func(name, copyTo string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{filepath.Join(dir, name), copyTo} {
			if err := os.WriteFile(p, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("screenshot: %s (copied to %s)", filepath.Join(dir, name), copyTo)
	}
	wait := func(what, predicate string) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if _, err := chromedp.Run(wctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v; the page shows:\n%s", what, err, text)
		}
	}

	// The overview.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	wait("the overview lists the three coordinators, one leading", `(() => {
		const rows = [...document.querySelectorAll('#members tbody tr')];
		return rows.map(r => r.dataset.name).join(',') === 'c1,c2,c3' &&
			rows.filter(r => r.textContent.includes('leader')).length === 1 &&
			rows.every(r => r.querySelector('.state.alive'));
	})()`)
	wait("the overview lists the job and its rounds", fmt.Sprintf(`(() => {
		const row = document.querySelector('#jobs tbody tr[data-job=%q]');
		return row && row.textContent.includes('%d / 8') && row.textContent.includes('succeeded');
	})()`, jobID, job.CommittedRounds))
	wait("the overview counts participants in three regions", `(() => {
		const rows = [...document.querySelectorAll('#regions tbody tr')];
		return rows.map(r => r.dataset.region).join(',') === 'ap-south,eu-west,us-east' &&
			rows.reduce((n, r) => n + Number(r.children[1].textContent), 0) === 6;
	})()`)
	wait("the job's sparkline draws", `(() => {
		const c = document.querySelector('#jobs canvas.spark');
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		let ink = 0;
		for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
		return ink > 50;
	})()`)
	wait("the overview shows the second job running", fmt.Sprintf(`(() => {
		const row = document.querySelector('#jobs tbody tr[data-job=%q]');
		return row && row.textContent.includes('running');
	})()`, longID))
	shot("status-page.png", filepath.Join(os.TempDir(), "status-page.png"))

	// The job's page.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs/"+jobID)); err != nil {
		t.Fatal(err)
	}
	wait("the job page lists every committed round", fmt.Sprintf(
		`document.querySelectorAll('#rounds tbody tr[data-status="COMMITTED"]').length === %d`, job.CommittedRounds))
	wait("the job page names the three coordinators", `[...document.querySelectorAll('#member-chips .chip')].map(c => c.dataset.name).join(',') === 'c1,c2,c3'`)
	// The chart's canvas has its series drawn in the series colour
	// (#1d4ed8), besides axes and labels.
	const chartInk = `(() => {
		const c = document.getElementById('chart');
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		let painted = 0, series = 0;
		for (let i = 0; i < d.length; i += 4) {
			if (d[i + 3] === 0) continue;
			painted++;
			if (d[i + 3] > 200 && Math.abs(d[i] - 29) < 24 && Math.abs(d[i + 1] - 78) < 24 && Math.abs(d[i + 2] - 216) < 24) series++;
		}
		return {Painted: painted, Series: series, Width: c.width};
	})()`
	wait("the accuracy chart draws", `(r => r.Painted > 2000 && r.Series > 300)(`+chartInk+`)`)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[struct{ Painted, Series, Width int }](chartInk))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chart: %d pixels painted, %d in the series colour, %d px wide", got.Painted, got.Series, got.Width)
	shot("status-page-job.png", filepath.Join(os.TempDir(), "status-page-job.png"))

	// The running job's page, which keeps refreshing itself: it shows
	// more committed rounds without being reloaded.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/jobs/"+longID)); err != nil {
		t.Fatal(err)
	}
	const newest = `Number(document.querySelector('#rounds tbody tr').dataset.round)`
	wait("the running job's page shows its rounds", `document.querySelectorAll('#rounds tbody tr[data-status="COMMITTED"]').length >= 3 &&
		document.getElementById('job-status').textContent === 'running'`)
	first, err := chromedp.Run(ctx, chromedp.Evaluate[int](newest))
	if err != nil {
		t.Fatal(err)
	}
	wait("the running job's page refreshes by itself", fmt.Sprintf(`%s > %d`, newest, first))
	shot("status-page-running.png", filepath.Join(os.TempDir(), "status-page-running.png"))
}
