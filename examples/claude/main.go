package main

import (
	_ "charm.land/fantasy"
	_ "charm.land/fantasy/providers/anthropic"
	_ "charm.land/fantasy/providers/bedrock"
	_ "charm.land/fantasy/providers/openaicompat"
	_ "github.com/berth-dev/berth/app"
)

func main() {}
