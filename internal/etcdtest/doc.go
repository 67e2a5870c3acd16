// Package etcdtest starts etcd servers inside the test process (etcd's
// server/v3/embed) on loopback ports of their own, in temporary directories, and
// stops them when the test ends: one member (Start) or a cluster of several
// (StartCluster). Tests of the etcd storage engine and of leader election, and the
// scale harness, use it; nothing outside tests imports it.
package etcdtest
