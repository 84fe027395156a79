package image_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/image/imagetest"
)

// BenchmarkPull: pull and unpack of an image from a loopback registry (in
// a fresh store each time) next to crane pulling it to a tarball, in one
// run. BERTH_BENCH_IMAGE_MB sets its size (default 200), in four layers of
// incompressible data.
func BenchmarkPull(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("unpacking keeps owners, which needs root")
	}
	mb := 200
	if v, err := strconv.Atoi(os.Getenv("BERTH_BENCH_IMAGE_MB")); err == nil && v > 0 {
		mb = v
	}
	var layers []v1.Layer
	for i := range 4 {
		layers = append(layers, imagetest.Layer(b, imagetest.Entry{Path: fmt.Sprintf("data/%d", i), Data: randomBytes(mb << 20 / 4)}))
	}
	reg := imagetest.NewRegistry(b, nil)
	reg.Push(b, "bench/big:v1", imagetest.Image(b, "linux/amd64", v1.Config{Cmd: []string{"/agent"}}, layers...))
	ref := reg.Ref("bench/big:v1")

	var berth, cr []time.Duration
	for b.Loop() {
		dir := b.TempDir()
		s, err := image.Open(image.Options{Dir: filepath.Join(dir, "images"), DockerConfig: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := s.Pull(context.Background(), ref, nil); err != nil {
			b.Fatal(err)
		}
		berth = append(berth, time.Since(t0))

		t0 = time.Now()
		img, err := crane.Pull(ref, crane.Insecure)
		if err != nil {
			b.Fatal(err)
		}
		if err := crane.Save(img, ref, filepath.Join(dir, "image.tar")); err != nil {
			b.Fatal(err)
		}
		cr = append(cr, time.Since(t0))
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Milliseconds())
	}
	bm, cm := median(berth), median(cr)
	b.ReportMetric(bm, "berth-pull-unpack-p50-ms")
	b.ReportMetric(cm, "crane-pull-tarball-p50-ms")
	b.ReportMetric(bm/cm, "berth/crane")
}
