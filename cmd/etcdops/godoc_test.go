package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs: every package of the project has a package comment
// ("Package x …", or "Command x …" for a main package), and no file has a
// comment between its package clause and its first declaration that
// documents nothing: a comment meant as the package's doc but placed after
// the clause, which go doc never shows.
func TestPackageDocs(t *testing.T) {
	root := filepath.Join("..", "..")
	docs := map[string]bool{} // directory → has a package comment
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "testdata" || path == filepath.Join(root, "lab", "etcdbin")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		if strings.HasSuffix(path, "_test.go") {
			if f.Doc != nil {
				docs[dir] = true
			}
			if _, ok := docs[dir]; !ok {
				docs[dir] = false
			}
		} else if f.Doc != nil {
			docs[dir] = true
			want := "Package " + f.Name.Name + " "
			if f.Name.Name == "main" {
				want = "Command "
			}
			if !strings.HasPrefix(f.Doc.Text(), want) {
				t.Errorf("%s: the package comment does not start with %q", path, want)
			}
		} else if _, ok := docs[dir]; !ok {
			docs[dir] = false
		}
		end := f.Package
		if len(f.Imports) > 0 {
			end = f.Imports[0].Pos()
		} else if len(f.Decls) > 0 {
			end = f.Decls[0].Pos()
		}
		for _, c := range f.Comments {
			if c.Pos() > f.Package && c.End() < end && !isDoc(f, c) {
				t.Errorf("%s:%d: a comment after the package clause documents nothing (a package comment goes before it)",
					path, fset.Position(c.Pos()).Line)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, ok := range docs {
		if !ok && !onlyTests(dir) {
			t.Errorf("package %s has no package comment", dir)
		}
	}
}

// isDoc reports whether c documents an import declaration.
func isDoc(f *ast.File, c *ast.CommentGroup) bool {
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Doc == c {
			return true
		}
	}
	return false
}

func onlyTests(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			return false
		}
	}
	return true
}
