import Foundation
import MergeModel
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeCompiler

@Suite struct SchemaTests {
  @Test("Schema/recipe.schema.json is what the checker's tables generate")
  func schemaInStep() throws {
    let path = Repository.root + "/Schema/recipe.schema.json"
    let generated = RecipeSchema.text()
    if ProcessInfo.processInfo.environment["RECORD_SNAPSHOTS"] != nil {
      try generated.write(toFile: path, atomically: true, encoding: .utf8)
    }
    let committed = try String(contentsOfFile: path, encoding: .utf8)
    #expect(committed == generated, "run RECORD_SNAPSHOTS=1 swift test --filter SchemaTests")
  }

  @Test("the schema names every method, parameter and key the checker knows")
  func schemaCoversCatalog() throws {
    let schema = try JSONValue.parse(RecipeSchema.text())
    let methods = schema["properties"]?["merge_method"]?["enum"]?.arrayValue?.compactMap(
      \.stringValue)
    #expect(methods == MethodRegistry.specs.map(\.name))
    let keys = schema["properties"]?.objectValue?.map(\.0)
    #expect(keys == RecipeDecoder.topLevelKeys)
    for method in MethodRegistry.specs {
      let params = schema["definitions"]?["parameters_\(method.name)"]?["properties"]?.objectValue?
        .map(\.0)
      #expect(params == method.parameters.map(\.name), "\(method.name)")
    }
  }
}

@Suite struct DocumentationTests {
  @Test("every recipe in Recipes/ and Examples/ compiles to optimized graphs, without a diagnostic")
  func bundledRecipes() throws {
    var paths: [String] = []
    for folder in [Repository.root + "/Recipes", Repository.examples] {
      paths += try FileManager.default.contentsOfDirectory(atPath: folder)
        .filter { $0.hasSuffix(".yml") }.map { folder + "/" + $0 }
    }
    #expect(paths.count >= 21)
    for path in paths {
      let compilation = Compiler.compile(path: path)
      #expect(
        compilation.diagnostics.isEmpty,
        "\(path): \(compilation.diagnostics.map(\.message.text))")
      let plan = try #require(compilation.plan, "\(path)")
      #expect(compilation.graphs.count == plan.tensors.count, "\(path)")
    }
  }

  @Test("every method of the registry lowers every tensor of its recipe in Recipes/")
  func everyMethodLowers() throws {
    for method in MethodRegistry.methods {
      let name = method.spec.name
      let path = Repository.root + "/Recipes/\(name).yml"
      #expect(FileManager.default.fileExists(atPath: path), "Recipes/\(name).yml is missing")
      var options = CompileOptions()
      options.optimize = false
      let compilation = Compiler.compile(path: path, options: options)
      let plan = try #require(compilation.plan, "\(name): \(compilation.diagnostics)")
      #expect(plan.method.spec.name == name)
      #expect(compilation.graphs.count == plan.tensors.count, "\(name)")
      // Lowered by the method itself: every floating-point tensor's graph stores a value
      // computed from every one of its inputs.
      for graph in compilation.graphs where graph.plan.inputs[0].info.dtype.isFloatingPoint {
        var reached = Set<Int>()
        var stack = [graph.output]
        while let id = stack.popLast() {
          guard reached.insert(id.index).inserted else { continue }
          stack += graph[id].inputs
        }
        let used = graph.nodes.indices.filter { reached.contains($0) }.compactMap { i -> Int? in
          if case .load(let input) = graph.nodes[i].op { return input } else { return nil }
        }
        #expect(used.sorted() == Array(graph.plan.inputs.indices), "\(name): \(graph.plan.name)")
        if case .store = graph[graph.output].op {
        } else {
          Issue.record("\(name): \(graph.plan.name) does not end in a store")
        }
      }
    }
  }

  @Test("the README's method table is the one the catalog generates")
  func readmeTable() throws {
    let readme = try String(contentsOfFile: Repository.root + "/README.md", encoding: .utf8)
    #expect(readme.contains(MethodRegistry.markdownTable()))
  }
}
