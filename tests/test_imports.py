"""What importing the package pulls in: the bijectors and the model need
neither TensorFlow Datasets nor mlxtend (the data layer loads on first use)."""

import subprocess
import sys
import textwrap

from tests import train_helpers as helpers


def test_bijectors_and_model_import_without_the_data_layer():
  script = textwrap.dedent("""
      import sys
      import cinc_tfp.bijectors
      import cinc_tfp
      cinc_tfp.CIncFlow((4, 4, 4), levels=1, depth=1, width=4)
      heavy = [name for name in ('tensorflow_datasets', 'mlxtend')
               if name in sys.modules]
      assert not heavy, heavy
      assert cinc_tfp.data.EMBEDDED == 'embedded'  # Loads on first use.
      assert 'tensorflow_datasets' in sys.modules
      from cinc_tfp import export, run  # The usual spelling works too.
      print('ok')
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd=helpers.ROOT,
                          env=helpers.env(), capture_output=True, text=True,
                          timeout=180, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == 'ok'
