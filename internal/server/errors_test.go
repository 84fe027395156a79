package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/errdefs"
)

// Every error class reaches the wire as AgentCore's type and status for it.
func TestClassifyClasses(t *testing.T) {
	for _, tc := range []struct {
		class  error
		typ    api.ErrorType
		status int
	}{
		{errdefs.ErrInvalidArgument, api.ErrValidation, 400},
		{errdefs.ErrUnauthenticated, api.ErrUnauthorized, 401},
		{errdefs.ErrResourceExhausted, api.ErrServiceQuota, 402},
		{errdefs.ErrPermissionDenied, api.ErrAccessDenied, 403},
		{errdefs.ErrNotFound, api.ErrResourceNotFound, 404},
		{errdefs.ErrConflict, api.ErrConflict, 409},
		{errdefs.ErrFailedPrecondition, api.ErrRetryableConflict, 409},
		{errdefs.ErrAgent, api.ErrRuntimeClient, 424},
		{errdefs.ErrUnavailable, api.ErrThrottling, 429},
	} {
		t.Run(tc.class.Error(), func(t *testing.T) {
			err := fmt.Errorf("session s1: %w", tc.class)
			ae := classify(fmt.Errorf("outer step: %w", err))
			if ae.typ != tc.typ || ae.typ.StatusCode() != tc.status {
				t.Fatalf("got %s (%d), want %s (%d)", ae.typ, ae.typ.StatusCode(), tc.typ, tc.status)
			}
			if !strings.Contains(ae.msg, "session s1") || ae.fields != nil || !errors.Is(ae, tc.class) {
				t.Fatalf("message %q, fields %v, cause %v", ae.msg, ae.fields, ae.cause)
			}
			// The class's own words are dropped, except "not found",
			// which reads well.
			if tc.class != errdefs.ErrNotFound && strings.Contains(ae.msg, tc.class.Error()) {
				t.Errorf("message %q repeats the class", ae.msg)
			}
			if tc.class == errdefs.ErrInvalidArgument && ae.reason != "FieldValidationFailed" {
				t.Errorf("reason %q", ae.reason)
			}
		})
	}
}

func TestClassifyFieldError(t *testing.T) {
	fe := errdefs.Field("lifecycleConfiguration.maxLifetime", "%d seconds is outside 60-28800", 5)
	for _, err := range []error{fe, fmt.Errorf("create runtime: %w", fe)} {
		ae := classify(err)
		want := []api.FieldError{{Name: "lifecycleConfiguration.maxLifetime", Message: "5 seconds is outside 60-28800"}}
		if ae.typ != api.ErrValidation || ae.reason != "FieldValidationFailed" || !slices.Equal(ae.fields, want) ||
			!strings.Contains(ae.msg, "lifecycleConfiguration.maxLifetime: 5 seconds") {
			t.Fatalf("%v: got %+v", err, ae)
		}
	}
}

func TestClassifySpecialErrors(t *testing.T) {
	mbe := &http.MaxBytesError{Limit: 1000}
	if ae := classify(fmt.Errorf("read payload: %w", mbe)); ae.typ != api.ErrValidation || !strings.Contains(ae.msg, "1000 bytes") {
		t.Errorf("MaxBytesError: %+v", ae)
	}
	if ae := classify(fmt.Errorf("call agent: %w", context.DeadlineExceeded)); ae.typ != api.ErrRuntimeClient || ae.typ.StatusCode() != 424 {
		t.Errorf("DeadlineExceeded: %+v", ae)
	}
	// An apiError keeps its type, wrapped or not.
	v := validation("payload", "too big")
	if ae := classify(fmt.Errorf("x: %w", v)); ae != v {
		t.Errorf("a wrapped apiError became %+v", ae)
	}
}

// An error of no class is a 500 whose message says nothing of the cause.
func TestUnknownErrorsLeakNothing(t *testing.T) {
	secret := "open /var/lib/berth/secrets/token-4f1c: permission denied"
	for _, err := range []error{errors.New(secret), fmt.Errorf("step: %w", errors.New(secret)), context.Canceled} {
		ae := classify(err)
		if ae.typ != api.ErrInternalServer || ae.msg != "internal error" || ae.fields != nil || ae.reason != "" {
			t.Fatalf("%v: got %+v", err, ae)
		}
	}
	s := New(Options{Logger: discard()})
	w := httptest.NewRecorder()
	s.writeError(w, newRequest("GET", "/x", nil), errors.New(secret))
	e := readError(t, w)
	if e.status != 500 || e.typ != api.ErrInternalServer || e.body.Message != "internal error" ||
		strings.Contains(w.Body.String(), "secrets") || strings.Contains(w.Body.String(), "permission") {
		t.Fatalf("wrote %d %s %s", w.Code, e.typ, w.Body)
	}
}

// writeError writes the type header, the status and AgentCore's body.
func TestWriteError(t *testing.T) {
	s := New(Options{Logger: discard()})
	w := httptest.NewRecorder()
	s.writeError(w, newRequest("PUT", "/runtimes/", nil), fmt.Errorf("create: %w", errdefs.Field("roleArn", "not a role")))
	e := readError(t, w)
	if e.status != 400 || e.typ != api.ErrValidation || e.body.Reason != "FieldValidationFailed" ||
		!slices.Equal(e.body.FieldList, []api.FieldError{{Name: "roleArn", Message: "not a role"}}) {
		t.Fatalf("got %+v", e)
	}
}

func TestDropClass(t *testing.T) {
	for _, tc := range []struct {
		msg   string
		class error
		want  string
	}{
		{"session busy: failed precondition", errdefs.ErrFailedPrecondition, "session busy"},
		{"acquire: unavailable: queue full", errdefs.ErrUnavailable, "acquire: queue full"},
		{`runtime "x": not found`, errdefs.ErrNotFound, `runtime "x": not found`},
		{"conflict", errdefs.ErrConflict, "conflict"},
	} {
		if got := dropClass(tc.msg, tc.class); got != tc.want {
			t.Errorf("dropClass(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
