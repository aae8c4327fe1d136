package provider

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubernetesModel mirrors the kubernetes provider's configuration, so users
// can copy theirs.
type kubernetesModel struct {
	Host                 types.String `tfsdk:"host"`
	Token                types.String `tfsdk:"token"`
	ClusterCACertificate types.String `tfsdk:"cluster_ca_certificate"`
	ClientCertificate    types.String `tfsdk:"client_certificate"`
	ClientKey            types.String `tfsdk:"client_key"`
	Insecure             types.Bool   `tfsdk:"insecure"`
	ConfigPath           types.String `tfsdk:"config_path"`
	ConfigContext        types.String `tfsdk:"config_context"`
	Exec                 *execModel   `tfsdk:"exec"`
}

type execModel struct {
	APIVersion types.String `tfsdk:"api_version"`
	Command    types.String `tfsdk:"command"`
	Args       types.List   `tfsdk:"args"`
	Env        types.Map    `tfsdk:"env"`
}

func kubernetesBlock() schema.Block {
	return schema.SingleNestedBlock{
		MarkdownDescription: "How to reach the Kubernetes API server, as in the kubernetes provider. " +
			"Either a kubeconfig (`config_path`, `config_context`) or explicit settings (`host` with " +
			"`token`, client certificates or `exec`); explicit settings override the kubeconfig's, and explicit credentials " +
			"(`token`, else `exec`, else `client_certificate`) replace the kubeconfig's instead of being sent beside them.",
		Attributes: map[string]schema.Attribute{
			"host": schema.StringAttribute{Optional: true,
				MarkdownDescription: "The API server URL. Env: `KUBE_HOST`."},
			"token": schema.StringAttribute{Optional: true, Sensitive: true,
				MarkdownDescription: "A bearer token. Env: `KUBE_TOKEN`."},
			"cluster_ca_certificate": schema.StringAttribute{Optional: true,
				MarkdownDescription: "PEM CA bundle of the API server. Env: `KUBE_CLUSTER_CA_CERT_DATA`."},
			"client_certificate": schema.StringAttribute{Optional: true,
				MarkdownDescription: "PEM client certificate. Env: `KUBE_CLIENT_CERT_DATA`."},
			"client_key": schema.StringAttribute{Optional: true, Sensitive: true,
				MarkdownDescription: "PEM client key. Env: `KUBE_CLIENT_KEY_DATA`."},
			"insecure": schema.BoolAttribute{Optional: true,
				MarkdownDescription: "Skip TLS verification of the API server. Env: `KUBE_INSECURE`."},
			"config_path": schema.StringAttribute{Optional: true,
				MarkdownDescription: "Path to a kubeconfig file. Env: `KUBE_CONFIG_PATH`."},
			"config_context": schema.StringAttribute{Optional: true,
				MarkdownDescription: "Context of the kubeconfig to use; default its current context. Env: `KUBE_CTX`."},
		},
		Blocks: map[string]schema.Block{
			"exec": schema.SingleNestedBlock{
				MarkdownDescription: "A credential plugin, e.g. `aws eks get-token`.",
				Attributes: map[string]schema.Attribute{
					"api_version": schema.StringAttribute{Optional: true,
						MarkdownDescription: "`client.authentication.k8s.io/v1` or `v1beta1`."},
					"command": schema.StringAttribute{Optional: true, MarkdownDescription: "The plugin command."},
					"args":    schema.ListAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Its arguments."},
					"env":     schema.MapAttribute{Optional: true, ElementType: types.StringType, MarkdownDescription: "Extra environment variables."},
				},
			},
		},
	}
}

// kubeRequestTimeout bounds every API request, so an API server that does
// not answer gives an error instead of a hang.
const kubeRequestTimeout = 30 * time.Second

// restConfig builds a client configuration from the block and the KUBE_*
// environment, the block winning. It errors on values unknown at this point
// and when nothing says where the API server is.
func (m *kubernetesModel) restConfig(userAgent string) (*rest.Config, error) {
	if m == nil {
		m = &kubernetesModel{}
	}
	var unknown []string
	str := func(name string, v types.String, env string) string {
		if v.IsUnknown() {
			unknown = append(unknown, name)
			return ""
		}
		if !v.IsNull() {
			return v.ValueString()
		}
		return os.Getenv(env)
	}
	host := str("host", m.Host, "KUBE_HOST")
	token := str("token", m.Token, "KUBE_TOKEN")
	ca := str("cluster_ca_certificate", m.ClusterCACertificate, "KUBE_CLUSTER_CA_CERT_DATA")
	cert := str("client_certificate", m.ClientCertificate, "KUBE_CLIENT_CERT_DATA")
	key := str("client_key", m.ClientKey, "KUBE_CLIENT_KEY_DATA")
	path := str("config_path", m.ConfigPath, "KUBE_CONFIG_PATH")
	kctx := str("config_context", m.ConfigContext, "KUBE_CTX")
	insecure := os.Getenv("KUBE_INSECURE") == "true"
	if m.Insecure.IsUnknown() {
		unknown = append(unknown, "insecure")
	} else if !m.Insecure.IsNull() {
		insecure = m.Insecure.ValueBool()
	}
	var exec *clientcmdapi.ExecConfig
	if m.Exec != nil {
		var err error
		if exec, err = m.Exec.config(); err != nil {
			return nil, err
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("kubernetes.%s is not known yet; it must be known when a resource is created or read",
			strings.Join(unknown, ", kubernetes."))
	}
	if host == "" && path == "" {
		return nil, errors.New("no Kubernetes API server configured: set kubernetes.host or kubernetes.config_path " +
			"in the provider block (or KUBE_HOST / KUBE_CONFIG_PATH)")
	}

	rules := &clientcmd.ClientConfigLoadingRules{}
	if path != "" {
		expanded, err := expandHome(path)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(expanded); err != nil {
			return nil, fmt.Errorf("kubernetes.config_path: cannot read the kubeconfig %q: %w", path, err)
		}
		rules.ExplicitPath = expanded
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kctx}
	overrides.ClusterInfo.Server = host
	overrides.ClusterInfo.InsecureSkipTLSVerify = insecure
	if ca != "" {
		overrides.ClusterInfo.CertificateAuthorityData = []byte(ca)
	}
	overrides.AuthInfo.Token = token
	if cert != "" {
		overrides.AuthInfo.ClientCertificateData = []byte(cert)
	}
	if key != "" {
		overrides.AuthInfo.ClientKeyData = []byte(key)
	}
	overrides.AuthInfo.Exec = exec

	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("building the Kubernetes client configuration: %w", err)
	}
	// Credentials given explicitly replace the kubeconfig's rather than join
	// them: a token sent beside the kubeconfig's client certificate would be
	// ignored by the API server (it takes the certificate first), so a wrong
	// token would pass unnoticed.
	if token != "" || exec != nil || cert != "" {
		keep := *cfg
		cfg.BearerToken, cfg.BearerTokenFile, cfg.Username, cfg.Password = "", "", "", ""
		cfg.CertData, cfg.CertFile, cfg.KeyData, cfg.KeyFile = nil, "", nil, ""
		cfg.ExecProvider, cfg.AuthProvider, cfg.AuthConfigPersister = nil, nil, nil
		switch {
		case token != "":
			cfg.BearerToken = token
		case exec != nil:
			cfg.ExecProvider = keep.ExecProvider
		default:
			cfg.CertData, cfg.KeyData = keep.CertData, keep.KeyData
		}
	}
	cfg.Timeout = kubeRequestTimeout
	cfg.UserAgent = userAgent
	// No client-side rate limit: terraform's -parallelism (10) bounds the
	// requests in flight, and the API server's priority and fairness
	// answers 429, which client-go retries, when it is loaded. The limit of
	// 50 a second the provider used to set made a plan of 1,000 sites wait
	// on itself (23.5 s, of which 20 s for its 1,000 reads; bench/README.md).
	cfg.QPS, cfg.Burst = -1, 0
	return cfg, nil
}

func (e *execModel) config() (*clientcmdapi.ExecConfig, error) {
	if e.Command.IsUnknown() || e.Args.IsUnknown() || e.Env.IsUnknown() || e.APIVersion.IsUnknown() {
		return nil, errors.New("kubernetes.exec is not known yet; it must be known when a resource is created or read")
	}
	if e.Command.ValueString() == "" {
		return nil, errors.New("kubernetes.exec.command is required when the exec block is set")
	}
	cfg := &clientcmdapi.ExecConfig{
		APIVersion:      e.APIVersion.ValueString(),
		Command:         e.Command.ValueString(),
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = "client.authentication.k8s.io/v1"
	}
	for _, a := range e.Args.Elements() {
		cfg.Args = append(cfg.Args, stringValue(a))
	}
	env := e.Env.Elements()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cfg.Env = append(cfg.Env, clientcmdapi.ExecEnvVar{Name: k, Value: stringValue(env[k])})
	}
	return cfg, nil
}

func stringValue(v attr.Value) string {
	if s, ok := v.(types.String); ok {
		return s.ValueString()
	}
	return ""
}

func expandHome(path string) (string, error) {
	if path != "~" && !strings.HasPrefix(path, "~/") {
		return path, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expanding %q: %w", path, err)
	}
	return filepath.Join(home, strings.TrimPrefix(path, "~")), nil
}
