package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/berth-dev/berth/api"
)

// ListImages lists the images berth holds, newest first, with the
// runtimes pinning each.
func (c *Client) ListImages(ctx context.Context) (*api.ImageList, error) {
	var out api.ImageList
	if err := c.do(ctx, http.MethodGet, api.PathImages, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PullImage has berth pull ref; progress, if set, hears how it goes.
func (c *Client) PullImage(ctx context.Context, ref string, progress func(api.ImagePullEvent)) (*api.Image, error) {
	body, err := json.Marshal(api.ImagePullRequest{Ref: ref})
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint()+api.PathImages+"/pull", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, decodeError(resp)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var e api.ImagePullEvent
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("pull %s: the answer ended early: %w", ref, err)
		}
		switch {
		case e.Error != "":
			return nil, &api.Error{Type: e.ErrorType, Message: e.Error, StatusCode: e.ErrorType.StatusCode(),
				RequestID: resp.Header.Get(api.HeaderAWSRequestID)}
		case e.Image != nil:
			return e.Image, nil
		case progress != nil:
			progress(e)
		}
	}
}

// RemoveImage removes an image by digest or reference; berth refuses
// one a runtime version pins.
func (c *Client) RemoveImage(ctx context.Context, ref string) (*api.ImagePrune, error) {
	if ref == "" {
		return nil, errors.New("remove image: empty reference")
	}
	parts := strings.Split(ref, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	var out api.ImagePrune
	if err := c.do(ctx, http.MethodDelete, api.PathImages+"/"+strings.Join(parts, "/"), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PruneImages removes every image no runtime version pins.
func (c *Client) PruneImages(ctx context.Context) (*api.ImagePrune, error) {
	var out api.ImagePrune
	if err := c.do(ctx, http.MethodPost, api.PathImages+"/prune", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
