// Command etcdctl is etcd's client, built from etcd's published Go module.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() { ctlv3.MustStart() }
