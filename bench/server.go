package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/llmtransport/llmtransport/internal/workload"
)

// serverEnv, set in the environment of the child process, makes the program
// serve instead of measuring. The server runs in its own process so that the
// measuring process's CPU time (getrusage) is the client's alone.
const serverEnv = "LLMT_BENCH_SERVER"

// serve answers like an OpenAI-compatible API on a loopback port, prints the
// port's address on stdout, and exits when stdin closes (when the parent
// exits, however it exits).
//
//	POST /ok    reads the body, answers 200 with a 1 KB chat completion
//	            (the upstream of internal/workload, shared with the module
//	            benchmarks) and OpenAI's six rate-limit headers, far from
//	            their limits, as OpenAI sends on every answer: what pacing
//	            learns from, and what every client receives alike
//	POST /dead  reads the body, answers 503 with a JSON error; counted
//	GET  /count returns the number of /dead requests since the last /count
func serve() {
	var dead atomic.Int64
	inner := workload.Upstream(&dead)
	ok, _ := inner.Handler(&http.Request{Method: "POST", URL: &url.URL{Path: "/ok"}})
	mux := http.NewServeMux()
	mux.Handle("/", inner)
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Ratelimit-Limit-Requests", "10000")
		h.Set("X-Ratelimit-Remaining-Requests", "9999")
		h.Set("X-Ratelimit-Reset-Requests", "6ms")
		h.Set("X-Ratelimit-Limit-Tokens", "30000000")
		h.Set("X-Ratelimit-Remaining-Tokens", "29999000")
		h.Set("X-Ratelimit-Reset-Tokens", "2ms")
		ok.ServeHTTP(w, r)
	})
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, dead.Swap(0))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	go (&http.Server{Handler: mux}).Serve(ln)
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// upstream is the server child process.
type upstream struct {
	cmd   *exec.Cmd
	stdin io.Closer
	url   string // http://127.0.0.1:port
}

// startUpstream starts this program again as the server and waits for its
// address.
func startUpstream() (*upstream, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), serverEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stdin.Close()
		cmd.Wait()
		return nil, fmt.Errorf("server did not start: %w", err)
	}
	return &upstream{cmd: cmd, stdin: stdin, url: "http://" + strings.TrimSpace(line)}, nil
}

// stop ends the child process.
func (u *upstream) stop() {
	u.stdin.Close()
	u.cmd.Wait()
}

// deadCount returns the number of /dead requests since the last call.
func (u *upstream) deadCount() (int, error) {
	resp, err := http.Get(u.url + "/count")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(b))
}
