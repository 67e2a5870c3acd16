// Package etcdtest starts an etcd server inside the test process (etcd's
// server/v3/embed) on loopback ports of its own, in a temporary directory, and
// stops it when the test ends. Tests of the etcd storage engine and of leader
// election use it; nothing outside tests imports it.
package etcdtest
