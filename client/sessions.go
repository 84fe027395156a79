package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/berth-dev/berth/api"
)

// SessionFilter narrows ListSessions. Zero fields match everything.
type SessionFilter struct {
	// Runtime is a runtime name, ID or ARN.
	Runtime  string
	Endpoint string
	// Session is a runtime session ID: its incarnations.
	Session string
	// State is live, starting, active, idle or terminated.
	State         string
	User          string
	CreatedAfter  time.Time
	CreatedBefore time.Time
	Limit         int
	Cursor        string
}

// ListSessions lists session incarnations, newest first.
func (c *Client) ListSessions(ctx context.Context, f SessionFilter) (*api.SessionList, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("runtime", f.Runtime)
	set("endpoint", f.Endpoint)
	set("session", f.Session)
	set("state", f.State)
	set("user", f.User)
	set("cursor", f.Cursor)
	if !f.CreatedAfter.IsZero() {
		set("created_after", f.CreatedAfter.Format(time.RFC3339))
	}
	if !f.CreatedBefore.IsZero() {
		set("created_before", f.CreatedBefore.Format(time.RFC3339))
	}
	if f.Limit > 0 {
		set("limit", strconv.Itoa(f.Limit))
	}
	path := api.PathSessions
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.SessionList
	if err := c.do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetSession shows one session incarnation, with live resource use and
// the tail of its log. Here and in StopSessionByID and SessionLogs, id is
// an incarnation's ID or a runtime session ID (its latest incarnation).
func (c *Client) GetSession(ctx context.Context, id string) (*api.Session, error) {
	var out api.Session
	if err := c.do(ctx, http.MethodGet, api.PathSessions+"/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StopSessionByID stops a live session incarnation by its ID.
func (c *Client) StopSessionByID(ctx context.Context, id string) (*api.Session, error) {
	var out api.Session
	if err := c.do(ctx, http.MethodPost, api.PathSessions+"/"+url.PathEscape(id)+"/stop", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SessionLogs streams a session's agent log. With follow it keeps going
// until the session ends. The caller closes the reader.
func (c *Client) SessionLogs(ctx context.Context, id string, tail int, follow bool) (io.ReadCloser, error) {
	u := c.endpoint() + api.PathSessions + "/" + url.PathEscape(id) + "/logs?follow=" + strconv.FormatBool(follow)
	if tail > 0 {
		u += "&tail=" + strconv.Itoa(tail)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("session logs: %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp.Body, nil
}
