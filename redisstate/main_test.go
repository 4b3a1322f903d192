package redisstate

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// The integration tests run against a real redis-server: the one at
// REDIS_ADDR, or one TestMain starts on a free loopback port. Without
// redis-server they skip, unless LLMTRANSPORT_REQUIRE_REDIS=1, when they
// fail.

var (
	sharedAddr  string // the server every test may use
	redisBinary string // redis-server, for tests that start (and kill) their own
	skipReason  string
)

const requireEnv = "LLMTRANSPORT_REQUIRE_REDIS"

func TestMain(m *testing.M) {
	code := run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func run(m *testing.M) int {
	flag.Parse()
	redisBinary, _ = exec.LookPath("redis-server")
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		sharedAddr = addr
		return m.Run()
	}
	if redisBinary == "" {
		skipReason = "redis-server not found in PATH (apt-get install redis-server, or set REDIS_ADDR)"
		if os.Getenv(requireEnv) == "1" {
			fmt.Fprintln(os.Stderr, "FAIL:", skipReason, "and", requireEnv+"=1")
			return 1
		}
		fmt.Fprintln(os.Stderr, "redisstate: integration tests and the Example skipped:", skipReason)
		if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "" {
			_ = flag.Set("test.run", "^(Test|Fuzz)") // the Example needs a server
		}
		return m.Run()
	}
	srv, err := startServer(freePort())
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: starting redis-server:", err)
		return 1
	}
	defer srv.stop()
	sharedAddr = srv.addr
	os.Setenv("REDIS_ADDR", srv.addr) // for the Example
	return m.Run()
}

// needRedis skips t when there is no server.
func needRedis(t testing.TB) string {
	t.Helper()
	if sharedAddr == "" {
		t.Skip(skipReason)
	}
	return sharedAddr
}

// needBinary skips t when it cannot start servers of its own.
func needBinary(t testing.TB) {
	t.Helper()
	if redisBinary == "" {
		if os.Getenv(requireEnv) == "1" {
			t.Fatal("redis-server not found in PATH and " + requireEnv + "=1")
		}
		t.Skip("redis-server not found in PATH")
	}
}

type server struct {
	addr string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer starts redis-server on 127.0.0.1:port, without persistence,
// and returns once it answers PING.
func startServer(port int, extra ...string) (*server, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning"}, extra...)
	cmd := exec.Command(redisBinary, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{addr: "127.0.0.1:" + strconv.Itoa(port), port: port, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("redis-server on port %d exited: %v", port, cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on port %d does not answer PING: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond) // bounded polling for the server to come up
	}
}

// stop kills the server and waits for it to exit.
func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// leakCheck checks, after every cleanup of t, that t left no goroutine.
func leakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}
