module github.com/klavi-billing/billingd

go 1.26.0

require (
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/rickar/cal/v2 v2.1.13 // indirect
	github.com/robfig/cron/v3 v3.0.1 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
