// Package iamcheck finds the AWS operations a program of this module can
// call, named as IAM names their permission ("ec2:DescribeSubnets"), so the
// policies in deploy/iam are checked against the code: every operation
// allowed, none more.
//
// An operation is a call, in the module's own code, to a method named Op
// with an argument of type *<service>.OpInput (the AWS SDK's shape, whether
// called on the SDK's client or through one of the product's interfaces).
// Only the functions reachable from the program's main count: the module's
// functions and methods, joined by any reference (a call, or a function
// used as a value), an interface method call reaching every module method of
// that name; a closure belongs to the function it is written in, package
// initialisers to the package's init. That over-approximates (never misses
// a call the program can make) at the grain of named functions.
package iamcheck

import (
	"fmt"
	"go/ast"
	"go/types"
	"os/exec"
	"strings"

	"golang.org/x/tools/go/packages"
)

// Services maps an SDK service package to its IAM prefix.
var Services = map[string]string{
	"github.com/aws/aws-sdk-go-v2/service/ec2":                    "ec2",
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2": "elasticloadbalancing",
	"github.com/aws/aws-sdk-go-v2/service/sts":                    "sts",
	"github.com/aws/aws-sdk-go-v2/service/iam":                    "iam",
}

// Debug, when set, receives a line about the analysis.
var Debug func(string)

// node is a module function: its operations and what it references.
type node struct {
	ops  map[string]bool
	refs []string // functions by FullName
	// calls are interface methods called by name.
	calls []string
	// types are the module's named types made here (composite literals,
	// conversions, new): libraries may call their methods.
	types []string
}

// Operations returns the AWS operations reachable from the main package at
// pattern (resolved in dir, the module's root), each with a function of the
// module that makes it.
func Operations(dir, pattern string) (map[string]string, error) {
	module, err := exec.Command("go", "list", "-C", dir, "-m").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m: %w", err)
	}
	mod := strings.TrimSpace(string(module))
	deps, err := exec.Command("go", "list", "-C", dir, "-deps", pattern).Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %w", pattern, err)
	}
	inBinary := map[string]bool{}
	for _, p := range strings.Fields(string(deps)) {
		inBinary[p] = true
	}
	// The whole module is read (a method some other program of the module
	// calls is not one only a library calls); the binary's packages are
	// the graph.
	all, err := exec.Command("go", "list", "-C", dir, mod+"/...").Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s/...: %w", mod, err)
	}
	own := strings.Fields(string(all))
	cfg := &packages.Config{Dir: dir, Mode: packages.NeedName | packages.NeedFiles | packages.NeedCompiledGoFiles | packages.NeedImports | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo}
	pkgs, err := packages.Load(cfg, own...)
	if err != nil {
		return nil, err
	}
	if packages.PrintErrors(pkgs) > 0 {
		return nil, fmt.Errorf("loading %s: errors above", pattern)
	}
	// Functions are keyed by their full name: each package sees the others
	// through export data, as distinct objects.
	nodes := map[string]*node{}
	methods := map[string][]string{}   // module methods by name
	methodsOf := map[string][]string{} // module methods by their receiver's type
	var roots []string
	named := map[string]bool{}
	for _, p := range pkgs {
		if !inBinary[p.PkgPath] {
			n := &node{ops: map[string]bool{}}
			for _, f := range p.Syntax {
				scan(p.TypesInfo, f, n)
			}
			for _, r := range n.refs {
				named[r] = true
			}
			continue
		}
		// The package's initialisers (var declarations) as one function.
		init := p.PkgPath + ".init#vars"
		nodes[init] = &node{ops: map[string]bool{}}
		roots = append(roots, init)
		for _, f := range p.Syntax {
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					fn, _ := p.TypesInfo.Defs[d.Name].(*types.Func)
					if fn == nil {
						continue
					}
					n := &node{ops: map[string]bool{}}
					key := fn.FullName()
					if fn.Name() == "init" && d.Recv == nil {
						key += fmt.Sprint("#", len(nodes)) // a package may have several
					}
					nodes[key] = n
					if d.Body != nil {
						scan(p.TypesInfo, d.Body, n)
					}
					if d.Recv != nil {
						methods[fn.Name()] = append(methods[fn.Name()], key)
						if t := typeName(fn.Type().(*types.Signature).Recv().Type()); t != "" {
							methodsOf[t] = append(methodsOf[t], key)
						}
					}
					if d.Recv == nil && (fn.Name() == "init" || (p.Name == "main" && fn.Name() == "main")) {
						roots = append(roots, key)
					}
				case *ast.GenDecl:
					scan(p.TypesInfo, d, nodes[init])
				}
			}
		}
	}
	// A method the module's own code never names is there for a library to
	// call through its interfaces (a framework's Schema, a reconciler's
	// Reconcile): reached once a value of its type is made. The others are
	// reached through the code that names them.
	for _, n := range nodes {
		for _, r := range n.refs {
			named[r] = true
		}
	}
	seen := map[string]bool{}
	ops := map[string]string{}
	var visit func(fn string)
	visit = func(fn string) {
		if seen[fn] {
			return
		}
		seen[fn] = true
		n := nodes[fn]
		if n == nil {
			return // not the module's
		}
		for op := range n.ops {
			if ops[op] == "" {
				ops[op] = fn
			}
		}
		for _, r := range n.refs {
			visit(r)
		}
		for _, name := range n.calls {
			for _, m := range methods[name] {
				visit(m)
			}
		}
		for _, t := range n.types {
			for _, m := range methodsOf[t] {
				if !named[m] {
					visit(m)
				}
			}
		}
	}
	for _, r := range roots {
		visit(r)
	}
	if Debug != nil {
		Debug(fmt.Sprintf("%d packages, %d functions, %d roots, %d reached", len(own), len(nodes), len(roots), len(seen)))
	}
	return ops, nil
}

// scan records what the syntax under root references and calls.
func scan(info *types.Info, root ast.Node, n *node) {
	ast.Inspect(root, func(x ast.Node) bool {
		switch x := x.(type) {
		case *ast.Ident:
			if fn, ok := info.Uses[x].(*types.Func); ok {
				n.refs = append(n.refs, fn.Origin().FullName())
			}
		case *ast.SelectorExpr:
			if sel := info.Selections[x]; sel != nil {
				if fn, ok := sel.Obj().(*types.Func); ok {
					n.refs = append(n.refs, fn.Origin().FullName())
					if types.IsInterface(sel.Recv()) {
						n.calls = append(n.calls, fn.Name())
					}
				}
			}
		case *ast.CompositeLit:
			if t := typeName(info.TypeOf(x)); t != "" {
				n.types = append(n.types, t)
			}
		case *ast.CallExpr:
			if op, ok := operation(info, x); ok {
				n.ops[op] = true
			}
			// new(T) and conversions T(v) make a T too.
			if tv, ok := info.Types[x.Fun]; ok && tv.IsType() {
				if t := typeName(tv.Type); t != "" {
					n.types = append(n.types, t)
				}
			}
			if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "new" && len(x.Args) == 1 {
				if t := typeName(info.TypeOf(x.Args[0])); t != "" {
					n.types = append(n.types, t)
				}
			}
		}
		return true
	})
}

// typeName is the full name of a named type (or a pointer to one), "" for
// others.
func typeName(t types.Type) string {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	named, ok := t.(*types.Named)
	if !ok || named.Obj().Pkg() == nil {
		return ""
	}
	return named.Obj().Pkg().Path() + "." + named.Obj().Name()
}

// operation names the AWS operation a call makes, if it is one: any call
// given a *<service>.OpInput (the operation itself, on the client or
// through an interface, or its paginator or waiter, which make it).
func operation(info *types.Info, call *ast.CallExpr) (string, bool) {
	for _, arg := range call.Args {
		ptr, ok := info.TypeOf(arg).(*types.Pointer)
		if !ok {
			continue
		}
		named, ok := ptr.Elem().(*types.Named)
		if !ok || named.Obj().Pkg() == nil || !strings.HasSuffix(named.Obj().Name(), "Input") {
			continue
		}
		if prefix, ok := Services[named.Obj().Pkg().Path()]; ok {
			return prefix + ":" + strings.TrimSuffix(named.Obj().Name(), "Input"), true
		}
	}
	return "", false
}
