// kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the library Flux's
// kustomize-controller and helm-controller use for health checks, computes for Kubernetes objects.
//
//	kubectl get modeldeployments -o json | kstatus
//
// Input: one object, or a List (`items`), as JSON on stdin. Output: one JSON line per object,
// {"namespace", "name", "status", "message"}; status is Current, InProgress, Failed, Terminating,
// NotFound or Unknown.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// apimachinery's decoder keeps integers int64, as the API server's objects have them.
	var doc map[string]interface{}
	if err := utiljson.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("stdin is not one JSON object: %w", err)
	}
	objects := []map[string]interface{}{doc}
	if items, ok := doc["items"].([]interface{}); ok {
		objects = objects[:0]
		for i, item := range items {
			obj, ok := item.(map[string]interface{})
			if !ok {
				return fmt.Errorf("items[%d] is not an object", i)
			}
			objects = append(objects, obj)
		}
	}
	encoder := json.NewEncoder(out)
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		computed, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
		line := result{u.GetNamespace(), u.GetName(), computed.Status.String(), computed.Message}
		if err := encoder.Encode(line); err != nil {
			return err
		}
	}
	return nil
}
