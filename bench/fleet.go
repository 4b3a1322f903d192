package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llmtransport/llmtransport/redisstate"
)

// The "llmtransport +fleet" contender shares state through a real Redis:
// the one at -redis, or a redis-server this program starts on a free
// loopback port (and stops) when -redis is empty. Its success path asks
// Redis nothing; what it adds is an idle subscription.
var (
	redisAddr  string
	stopRedis  = func() {}
	fleetState *redisstate.State
)

// sharedState returns the State of the fleet contender, starting Redis
// when no address was given.
func sharedState() *redisstate.State {
	if fleetState != nil {
		return fleetState
	}
	if redisAddr == "" {
		addr, stop, err := startRedis()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: llmtransport +fleet needs Redis (-redis addr, or redis-server in PATH):", err)
			os.Exit(2)
		}
		redisAddr, stopRedis = addr, stop
	}
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: Redis at", redisAddr, "does not answer:", err)
		os.Exit(2)
	}
	fleetState = redisstate.New(c, redisstate.WithNamespace(fmt.Sprintf("bench-%d", os.Getpid())))
	return fleetState
}

// startRedis starts redis-server without persistence on a free loopback
// port and returns once it answers PING.
func startRedis() (addr string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the server to come up
	}
}
