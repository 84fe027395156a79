package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/berth-dev/berth/app"
)

func Example() {
	a := app.New(app.WithLogger(slog.New(slog.DiscardHandler)))
	a.Entrypoint(func(ctx context.Context, payload []byte) (any, error) {
		var in struct {
			Prompt string `json:"prompt"`
		}
		if err := json.Unmarshal(payload, &in); err != nil {
			return nil, &app.HTTPError{Status: http.StatusBadRequest, Detail: err.Error()}
		}
		return map[string]string{
			"session": app.RequestFrom(ctx).SessionID,
			"echo":    in.Prompt,
		}, nil
	})

	// Under berth, a.Run() serves; here a test server stands in.
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/invocations", strings.NewReader(`{"prompt":"hi"}`))
	req.Header.Set("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", "example-session-0000000000000000000000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"))
	fmt.Println(string(body))
	// Output:
	// 200 application/json
	// {"echo":"hi","session":"example-session-0000000000000000000000"}
}

func ExampleStream() {
	a := app.New(app.WithLogger(slog.New(slog.DiscardHandler)))
	a.Entrypoint(func(ctx context.Context, payload []byte) (any, error) {
		return app.Stream(func(send func(event any) error) error {
			for _, word := range []string{"hello", "world"} {
				if err := send(map[string]string{"delta": word}); err != nil {
					return err // the client has gone
				}
			}
			return nil
		}), nil
	})

	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/invocations", "application/json", strings.NewReader(`{}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Header.Get("Content-Type"))
	fmt.Print(string(body))
	// Output:
	// text/event-stream
	// data: {"delta":"hello"}
	//
	// data: {"delta":"world"}
}

func ExampleApp_StartAsyncTask() {
	a := app.New(app.WithLogger(slog.New(slog.DiscardHandler)))
	done := make(chan struct{})
	a.StartAsyncTask("reindex", func(ctx context.Context) error {
		<-done // stands in for long background work
		return nil
	})
	fmt.Println(a.Ping().Status)
	close(done)
	_ = a.Shutdown(context.Background()) // waits for the task
	fmt.Println(a.Ping().Status)
	// Output:
	// HealthyBusy
	// Healthy
}
