//go:build linux

package linux_test

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
)

func TestTraceTmp(t *testing.T) {
	b := newBackend(t)
	logp := t.TempDir() + "/log"
	vals := map[string][]int{}
	var order []string
	var tot []int
	for i := 0; i < 60; i++ {
		os.Truncate(logp, 0)
		s := spec(t, func(s *sandbox.Spec) { s.LogPath = logp })
		old := os.Stderr
		r, w, _ := os.Pipe()
		os.Stderr = w
		t0 := time.Now()
		_ = coldStart(t, b, s)
		d := time.Since(t0)
		_ = d
		w.Close()
		os.Stderr = old
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 4 && f[0] == "TRACE" {
				k := f[1] + " " + f[2]
				if _, ok := vals[k]; !ok {
					order = append(order, k)
				}
				v, _ := strconv.Atoi(f[3])
				vals[k] = append(vals[k], v)
			}
		}
		lf, _ := os.Open(logp)
		sc = bufio.NewScanner(lf)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 4 && f[0] == "TRACE" {
				k := f[1] + " " + f[2]
				if _, ok := vals[k]; !ok {
					order = append(order, k)
				}
				v, _ := strconv.Atoi(f[3])
				vals[k] = append(vals[k], v)
			}
		}
		lf.Close()
		tot = append(tot, int(coldStartLast.Microseconds()))
	}
	slices.Sort(tot)
	for _, k := range order {
		v := vals[k]
		slices.Sort(v)
		t.Logf("%-20s p50 %6d us  p90 %6d", k, v[len(v)/2], v[len(v)*9/10])
	}
	t.Logf("total p50 %d", tot[len(tot)/2])
}
